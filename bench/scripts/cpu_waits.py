#!/usr/bin/env python3
"""How long a process's threads waited for their CPU, and what ran meanwhile, from a
scheduler trace of that CPU.

Record while a benchmark runs (root; CPU 1 runs the generator in `ringflow-bench run`):

    perf sched record -k mono -C 1 -o sched.data -- sleep 24
    python3 -c "import time; print(time.time() - time.clock_gettime(time.CLOCK_MONOTONIC))" > offset.txt
    perf script -i sched.data -F comm,tid,cpu,time,event,trace > sched.txt
    python3 bench/scripts/cpu_waits.py sched.txt --comm ringflow-bench \
        [--run RUN.json --wall-minus-mono $(cat offset.txt)]

A wait runs from a thread's wakeup (`sched_waking`), or from its being preempted while
runnable, to its next switch-in. With --run only waits that end in the run's measured
window count. Prints the waits' percentiles, then for the waits over 1 ms how long each
other task ran inside them, then every task's time on the CPU.
"""
import bisect
import collections
import json
import re
import sys

SWITCH = re.compile(r"(\d+\.\d+):\s+sched:sched_switch: prev_comm=(.+?) prev_pid=(\d+) .*?"
                    r"prev_state=(\S+) ==> next_comm=(.+?) next_pid=(\d+)")
WAKING = re.compile(r"(\d+\.\d+):\s+sched:sched_waking: comm=(.+?) pid=(\d+) ")


def option(args, name, default=None):
    if name in args:
        index = args.index(name)
        value = args[index + 1]
        del args[index:index + 2]
        return value
    return default


def main():
    args = sys.argv[1:]
    comm = option(args, "--comm", "ringflow-bench")
    run = option(args, "--run")
    offset = option(args, "--wall-minus-mono")
    window = (float("-inf"), float("inf"))
    if run and offset:
        report = json.load(open(run))
        start = report["started_unix_ms"] / 1000 - float(offset)
        window = (start + report["warmup_s"], start + report["warmup_s"] + report["duration_s"])
    runs = []  # (from, to, task) of whatever ran
    current = None
    waiting = {}
    waits = []
    for line in open(args[0], errors="replace"):
        match = SWITCH.search(line)
        if match:
            time = float(match[1])
            if current is not None:
                runs.append((current, time, match[2]))
            current = time
            if match[5].startswith(comm):
                began = waiting.pop(int(match[6]), None)
                if began is not None:
                    waits.append((began, time))
            if match[2].startswith(comm) and match[4].startswith("R"):
                waiting[int(match[3])] = time
            continue
        match = WAKING.search(line)
        if match and match[2].startswith(comm):
            waiting.setdefault(int(match[3]), float(match[1]))
    starts = [began for began, _, _ in runs]

    def ran_in(begin, end):
        tasks = collections.Counter()
        index = max(0, bisect.bisect_right(starts, begin) - 1)
        while index < len(runs) and runs[index][0] < end:
            began, ended, task = runs[index]
            overlap = min(ended, end) - max(began, begin)
            if overlap > 0:
                tasks[re.sub(r"^(kworker/[^-]+)-.*", r"\1", task)] += overlap * 1e3
            index += 1
        return tasks

    waits = [(began, ended) for began, ended in waits if window[0] <= ended <= window[1]]
    if not waits:
        sys.exit(f"no waits of {comm} threads in the trace")
    lengths = sorted((ended - began) * 1e3 for began, ended in waits)
    at = lambda fraction: lengths[min(len(lengths) - 1, int(fraction * len(lengths)))]
    print(f"{comm}: {len(lengths)} waits for the CPU; p50 {at(.5):.3f} p99 {at(.99):.3f} "
          f"max {lengths[-1]:.2f} ms; over 1 ms {sum(x > 1 for x in lengths)}, "
          f"over 2 ms {sum(x > 2 for x in lengths)}")
    during = collections.Counter()
    for began, ended in waits:
        if ended - began > 0.001:
            during.update(ran_in(began, ended))
    print("ran during the waits over 1 ms (ms):",
          ", ".join(f"{task} {ms:.1f}" for task, ms in during.most_common(8)))
    span = (max(window[0], runs[0][0]), min(window[1], runs[-1][1]))
    print(f"on the CPU over {span[1] - span[0]:.1f} s (ms):",
          ", ".join(f"{task} {ms:.0f}" for task, ms in ran_in(*span).most_common(10)))


if __name__ == "__main__":
    main()
