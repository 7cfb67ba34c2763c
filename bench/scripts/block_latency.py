#!/usr/bin/env python3
"""How long the disk took for each write and flush, from the block layer's own tracepoints.

The server's commit trace (`--slow-commit-ms`) times a write and an fdatasync from the
shard's side: submission to the moment the shard sees the completion. This reads what the
kernel's block layer saw for the same requests, so the two can be told apart:

    perf record -a -e block:block_rq_issue -e block:block_rq_complete -o blk.data -- sleep 10
    perf script -i blk.data > blk.txt
    bench/scripts/block_latency.py [--device 254,0] blk.txt

Writes are paired by sector. A flush has no sector: a flush issued while another one is in
flight is held back and issued again later (by the block layer's `kblockd` worker, whose
`kworker/N:1H` threads run on the CPUs the disk's queue maps to), so each completed flush is
timed twice: from the first issue since the flush before it completed (what a caller waits)
and from the last issue (what the device took).
"""

import argparse
import re
import sys

EVENT = re.compile(
    r"\s(\d+\.\d+):\s+block:block_rq_(issue|complete): (\S+) (\S+) (?:\d+ )?\(\) (\d+) \+ (\d+)"
)


def quantiles(values):
    values = sorted(values)
    if not values:
        return "none"

    def at(share):
        return values[min(len(values) - 1, int(len(values) * share))]

    return (
        f"{len(values)} requests: p50 {at(0.5):.3f}, p90 {at(0.9):.3f}, p99 {at(0.99):.3f}, "
        f"p99.9 {at(0.999):.3f}, max {values[-1]:.3f} ms; over 1 ms {sum(v > 1 for v in values)}, "
        f"over 5 ms {sum(v > 5 for v in values)}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", help="MAJOR,MINOR as perf prints it (default: every device)")
    parser.add_argument("trace", help="the output of `perf script` (- for standard input)")
    args = parser.parse_args()
    source = sys.stdin if args.trace == "-" else open(args.trace, encoding="utf-8")
    writes_issued = {}
    writes = []
    flush_first = flush_last = None
    flush_from_first = []
    flush_from_last = []
    flush_issues = 0
    for line in source:
        match = EVENT.search(line)
        if not match:
            continue
        at, kind, device, rwbs, sector, sectors = match.groups()
        if args.device and device != args.device:
            continue
        at = float(at)
        if "F" in rwbs and sectors == "0":
            if kind == "issue":
                flush_issues += 1
                flush_first = at if flush_first is None else flush_first
                flush_last = at
            elif flush_first is not None:
                flush_from_first.append((at - flush_first) * 1000)
                flush_from_last.append((at - flush_last) * 1000)
                flush_first = flush_last = None
        elif "W" in rwbs and sectors != "0":
            if kind == "issue":
                writes_issued[(device, sector)] = at
            elif (device, sector) in writes_issued:
                writes.append((at - writes_issued.pop((device, sector))) * 1000)
    if not writes and not flush_from_first:
        sys.exit(f"{args.trace}: no block_rq_issue/block_rq_complete pairs found")
    print(f"writes: {quantiles(writes)}")
    print(f"flushes, from the first issue: {quantiles(flush_from_first)}")
    print(f"flushes, from the last issue: {quantiles(flush_from_last)}")
    print(f"flush issues: {flush_issues} for {len(flush_from_first)} completed flushes")


if __name__ == "__main__":
    main()
