#!/usr/bin/env python3
"""How long the disk took for each write and flush, from the block layer's own tracepoints.

The server's commit trace (`--slow-commit-ms`) times a write and an fdatasync from the
shard's side: submission to the moment the shard sees the completion. This reads what the
kernel's block layer saw, so that a slow disk can be told from a slow commit path:

    perf record -a -m 8192 -e block:block_rq_issue -e block:block_rq_complete -o blk.data -- sleep 4
    perf script -i blk.data > blk.txt
    bench/scripts/block_latency.py [--device 254,0] blk.txt

Writes are paired by sector. Not every issued request has a traced completion (on the
project's VM about a third of the writes had none, with no sample lost), so a write without
one is counted, not timed. A flush has no sector: only a flush issued when no other was
waiting, and completed before the next issue, is timed; the others are counted as
ambiguous. Metadata writes (`M`) are counted by the process that issued them (an
fdatasync's own metadata write is issued by io_uring's worker, `iou-wrk-<pid>`).
"""

import argparse
import collections
import re
import sys

EVENT = re.compile(
    r"^\s*(.+?)\s+\d+\s+\[\d+\]\s+(\d+\.\d+):\s+block:block_rq_(issue|complete): "
    r"(\S+) (\S+) (?:\d+ )?\(\) (\d+) \+ (\d+)"
)


def quantiles(values):
    values = sorted(values)
    if not values:
        return "none timed"

    def at(share):
        return values[min(len(values) - 1, int(len(values) * share))]

    return (
        f"{len(values)} timed: p50 {at(0.5):.3f}, p90 {at(0.9):.3f}, p99 {at(0.99):.3f}, "
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
    flushes = []
    flush_waiting = []
    flush_issues = flush_ambiguous = 0
    metadata = collections.Counter()
    for line in source:
        match = EVENT.search(line)
        if not match:
            continue
        comm, at, kind, device, rwbs, sector, sectors = match.groups()
        if args.device and device != args.device:
            continue
        at = float(at)
        if "F" in rwbs and sectors == "0":
            if kind == "issue":
                flush_issues += 1
                flush_waiting.append(at)
            elif len(flush_waiting) == 1:
                flushes.append((at - flush_waiting[0]) * 1000)
                flush_waiting = []
            elif flush_waiting:
                flush_ambiguous += 1
                flush_waiting = []
        elif "W" in rwbs and sectors != "0":
            if kind == "issue":
                writes_issued[(device, sector)] = at
                if "M" in rwbs:
                    metadata[re.sub(r"-\d+$", "-<pid>", comm.strip())] += 1
            elif (device, sector) in writes_issued:
                writes.append((at - writes_issued.pop((device, sector))) * 1000)
    if not writes and not flushes:
        sys.exit(f"{args.trace}: no block_rq_issue/block_rq_complete pairs found")
    print(f"writes: {quantiles(writes)}; {len(writes_issued)} issued with no traced completion")
    print(
        f"flushes: {quantiles(flushes)}; {flush_issues} issued, {flush_ambiguous} completions "
        "after more than one issue (not timed)"
    )
    for comm, count in metadata.most_common(5):
        print(f"metadata writes issued by {comm}: {count}")


if __name__ == "__main__":
    main()
