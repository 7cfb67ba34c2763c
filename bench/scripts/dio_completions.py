#!/usr/bin/env python3
"""How long the completions of O_DIRECT writes wait for a kernel worker, from workqueue
tracepoints.

On ext4 (and every iomap filesystem), an O_DIRECT write that io_uring issues completes in a
work item (`iomap_dio_complete_work`, workqueue `dio/<disk>`), queued on the CPU that took
the disk's interrupt and run by that CPU's kworker; only then does io_uring post the
completion. Record while a benchmark runs (root):

    perf record -e workqueue:workqueue_queue_work -e workqueue:workqueue_execute_start \
        -e workqueue:workqueue_execute_end -a -o wq.data -- sleep 3
    perf script -i wq.data -F comm,tid,cpu,time,event,trace > wq.txt
    python3 bench/scripts/dio_completions.py wq.txt

Prints, per CPU, how many such items were queued, the wait from queued to started
(percentiles, ms) and the time they ran, and what the worker ran in all.
"""
import re
import sys
from collections import defaultdict

LINE = re.compile(r"^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+(\d+\.\d+):\s+workqueue:(\w+):\s+(.*)$")
WORK = re.compile(r"work struct[= ](0x[0-9a-f]+)")
FUNCTION = re.compile(r"function[= ](\S+)")


def percentile(ordered, fraction):
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main():
    queued = {}
    started = {}
    waits = defaultdict(list)
    runs = defaultdict(list)
    for line in open(sys.argv[1], errors="replace"):
        match = LINE.match(line)
        if not match:
            continue
        cpu, time, event, rest = int(match[3]), float(match[4]), match[5], match[6]
        function = FUNCTION.search(rest)
        work = WORK.search(rest)
        if not function or not work or function[1] != "iomap_dio_complete_work":
            continue
        key = work[1]
        if event == "workqueue_queue_work":
            queued[key] = (cpu, time)
        elif event == "workqueue_execute_start" and key in queued:
            queued_cpu, queued_at = queued.pop(key)
            waits[queued_cpu].append((time - queued_at) * 1e3)
            started[key] = time
        elif event == "workqueue_execute_end" and key in started:
            runs[cpu].append((time - started.pop(key)) * 1e3)
    if not waits:
        sys.exit("no iomap_dio_complete_work in the trace")
    for cpu in sorted(waits):
        ordered = sorted(waits[cpu])
        ran = sorted(runs.get(cpu, [0.0]))
        print(
            f"CPU {cpu}: {len(ordered)} write completions; queued to started ms: "
            f"p50 {percentile(ordered, .5):.3f} p90 {percentile(ordered, .9):.3f} "
            f"p99 {percentile(ordered, .99):.3f} max {ordered[-1]:.3f}; "
            f"ran p50 {percentile(ran, .5):.3f} max {ran[-1]:.3f}, {sum(ran):.1f} in all"
        )


if __name__ == "__main__":
    main()
