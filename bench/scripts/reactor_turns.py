#!/usr/bin/env python3
"""How often a shard's reactor enters the kernel, and how long it stays out, from syscall and
scheduler tracepoints on the shard's CPU.

Record while a benchmark runs (root; CPU 0 runs the shard in `ringflow-bench run`):

    perf record -e syscalls:sys_enter_io_uring_enter -e syscalls:sys_exit_io_uring_enter \
        -e sched:sched_switch -C 0 -o turns.data -- sleep 3
    perf script -i turns.data -F comm,tid,cpu,time,event,trace > turns.txt
    python3 bench/scripts/reactor_turns.py turns.txt

With `--run RUN.json --wall-minus-mono SECONDS` (record with `perf record -k mono`, and
take the offset as `time.time() - time.clock_gettime(time.CLOCK_MONOTONIC)` beside it), it
also prints, for each second of the run's timeline, the longest gap and the run's p99 that
second: a request that reaches the shard's socket waits at most about one gap before the
shard reads it.

The shard's thread is the one that enters io_uring most. A gap runs from one io_uring_enter's
return to the next call: the time the reactor spent running tasks (or off the CPU) before it
next submitted requests or looked for completions. Prints the gaps' percentiles, the share of
long gaps the thread spent on the CPU (the rest it was switched out), and the calls by ring
and kind (a call with min_complete > 0 is the executor going to sleep).
"""
import json
import re
import sys
from collections import Counter

LINE = re.compile(r"^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+(\d+\.\d+):\s+(\S+):\s*(.*)$")


def percentile(ordered, fraction):
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main():
    args = sys.argv[1:]
    run, offset = None, None
    if "--run" in args:
        index = args.index("--run")
        run = json.load(open(args[index + 1]))
        del args[index:index + 2]
    if "--wall-minus-mono" in args:
        index = args.index("--wall-minus-mono")
        offset = float(args[index + 1])
        del args[index:index + 2]
    events = []
    for line in open(args[0], errors="replace"):
        match = LINE.match(line)
        if match:
            events.append((float(match[4]), int(match[2]), match[5], match[6]))
    events.sort()
    enters = Counter(tid for _, tid, name, _ in events if name == "syscalls:sys_enter_io_uring_enter")
    if not enters:
        sys.exit("no io_uring_enter in the trace")
    shard = enters.most_common(1)[0][0]
    calls = Counter()
    gaps = []  # (length, time on the CPU)
    last_exit = None
    on_cpu_since = None
    on_cpu = 0.0
    for time, tid, name, rest in events:
        if name == "sched:sched_switch":
            previous = int(re.search(r"prev_pid=(\d+)", rest)[1])
            following = int(re.search(r"next_pid=(\d+)", rest)[1])
            if previous == shard and on_cpu_since is not None:
                on_cpu += time - on_cpu_since
                on_cpu_since = None
            elif following == shard and last_exit is not None:
                on_cpu_since = time
            continue
        if tid != shard:
            continue
        if name == "syscalls:sys_exit_io_uring_enter":
            last_exit, on_cpu_since, on_cpu = time, time, 0.0
        elif name == "syscalls:sys_enter_io_uring_enter":
            fd = re.search(r"fd: (0x[0-9a-f]+)", rest)[1]
            waits = int(re.search(r"min_complete: (0x[0-9a-f]+)", rest)[1], 16) > 0
            calls[(int(fd, 16), "waits" if waits else "does not wait")] += 1
            if last_exit is not None:
                if on_cpu_since is not None:
                    on_cpu += time - on_cpu_since
                gaps.append((time - last_exit, on_cpu, time))
                last_exit = None
    span = events[-1][0] - events[0][0]
    ordered = sorted(length * 1e3 for length, _, _ in gaps)
    print(f"shard thread {shard}: {sum(calls.values())} io_uring_enter calls in {span:.2f} s")
    for (fd, kind), count in sorted(calls.items(), key=lambda kv: -kv[1]):
        print(f"  ring fd {fd}, {kind}: {count}")
    print("gap from a return to the next call, ms: p50 %.3f p90 %.3f p99 %.3f max %.3f" % (
        percentile(ordered, .5), percentile(ordered, .9), percentile(ordered, .99), ordered[-1]))
    for limit in (0.5, 1.0, 2.0, 5.0):
        long = [(length, busy) for length, busy, _ in gaps if length * 1e3 > limit]
        total = sum(length for length, _ in long)
        share = 100 * sum(busy for _, busy in long) / total if total else 0
        print(f"gaps over {limit} ms: {len(long)}, on the CPU {share:.0f}% of their time")
    if run is not None and offset is not None:
        started = run["started_unix_ms"] / 1000
        longest = {}
        for length, busy, end in gaps:
            at_s = int(end + offset - started) + 1
            if length > longest.get(at_s, (0, 0))[0]:
                longest[at_s] = (length, busy)
        machine = {second["at_s"]: second for second in run.get("machine_timeline", [])}
        print("second  p99 ms  longest gap ms (on the CPU)  server requests over 5 ms")
        for second in run["timeline"]:
            if second["at_s"] in longest:
                length, busy = longest[second["at_s"]]
                over = machine.get(second["at_s"], {}).get("server_requests_over_5ms", "-")
                print(f"{second['at_s']:>6}  {second['p99_us'] / 1000:>6.1f}  "
                      f"{length * 1e3:>8.2f} ({busy * 1e3:.2f})  {over:>10}")


if __name__ == "__main__":
    main()
