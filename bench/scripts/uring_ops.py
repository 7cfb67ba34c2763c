#!/usr/bin/env python3
"""What io_uring does with a server's requests, from its tracepoints.

Record while a benchmark runs (root), then read the record:

    perf record -e io_uring:io_uring_submit_req -e io_uring:io_uring_queue_async_work \
        -e io_uring:io_uring_complete -a -o uring.data -- sleep 3
    perf script -i uring.data -F comm,tid,time,event,trace > uring.txt
    python3 bench/scripts/uring_ops.py uring.txt [--comm ringflow-shard]

For each opcode: how many requests were submitted, how many io_uring handed to a worker
thread (io-wq: the request could not complete without blocking, so an `iou-wrk` thread runs
it), and the time from submission to completion, for those run inline and those handed on.
Requests are paired by their request pointer, in time order (a pointer is reused only after
its request completed). Only requests submitted by threads whose name starts with --comm
count (default `ringflow-shard`, the shards' threads).
"""
import argparse
import re
import sys
from collections import defaultdict

LINE = re.compile(
    r"^\s*(?P<comm>.+?)\s+(?P<tid>\d+)\s+(?P<time>\d+\.\d+):\s+io_uring:(?P<event>\w+):\s+(?P<rest>.*)$"
)
REQ = re.compile(r"\breq(?:uest)? (0x[0-9a-f]+)")
OPCODE = re.compile(r"opcode (\w+)")


def percentile(values, fraction):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("script", help="the text of `perf script -F comm,tid,time,event,trace`")
    parser.add_argument("--comm", default="ringflow-shard")
    args = parser.parse_args()
    open_requests = {}  # req -> [opcode, submit time, handed on]
    stats = defaultdict(lambda: {"submitted": 0, "handed": 0, "inline": [], "worker": []})
    unparsed = 0
    for line in open(args.script, errors="replace"):
        match = LINE.match(line)
        if not match:
            unparsed += 1
            continue
        event, rest = match["event"], match["rest"]
        found = REQ.search(rest)
        if not found:
            continue
        req, time = found.group(1), float(match["time"])
        if event == "io_uring_submit_req":
            if not match["comm"].startswith(args.comm):
                continue
            opcode = OPCODE.search(rest).group(1)
            open_requests[req] = [opcode, time, False]
            stats[opcode]["submitted"] += 1
        elif event == "io_uring_queue_async_work" and req in open_requests:
            if not open_requests[req][2]:
                open_requests[req][2] = True
                stats[open_requests[req][0]]["handed"] += 1
        elif event == "io_uring_complete" and req in open_requests:
            opcode, submitted, handed = open_requests.pop(req)
            stats[opcode]["worker" if handed else "inline"].append((time - submitted) * 1e3)
    print(f"{'opcode':<14}{'submitted':>10}{'to a worker':>13}  {'inline p50/p99 ms':>18}  {'worker p50/p99 ms':>18}")
    for opcode, s in sorted(stats.items(), key=lambda kv: -kv[1]["submitted"]):
        inline = f"{percentile(s['inline'], .5):.3f}/{percentile(s['inline'], .99):.3f}" if s["inline"] else "-"
        worker = f"{percentile(s['worker'], .5):.3f}/{percentile(s['worker'], .99):.3f}" if s["worker"] else "-"
        print(f"{opcode:<14}{s['submitted']:>10}{s['handed']:>13}  {inline:>18}  {worker:>18}")
    if unparsed:
        print(f"({unparsed} lines not understood)", file=sys.stderr)


if __name__ == "__main__":
    main()
