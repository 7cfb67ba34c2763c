#!/usr/bin/env python3
"""Why were a run's slow seconds slow?

Reads `ringflow-bench run` JSON reports (with `timeline` and `machine_timeline`) and,
optionally, the server's log of each run with the commit trace (`--slow-commit-ms`, kept
with `--keep-data`: `<data-root>/run-*.log`). Every measured second whose p99 is over the
threshold gets one cause, the first that holds:

  steal        the hypervisor took at least one tick (10 ms) from the server's or the
               generator's CPUs in that second (`cpu_steal_ms`, `generator_cpu_steal_ms`)
  slow commit  a commit of the server took longer than the threshold and ended in that
               second or the one before (from the log; needs the log)
  none seen    neither

and prints, per cause, how many seconds and their median p99. The seconds under the
threshold are counted by the same test, so that one sees how often each sign shows in
good seconds too.

    bench/scripts/attribute.py [--threshold-ms 5] REPORT.json[:SERVER.log] ...
"""

import argparse
import datetime
import json
import re
import statistics
import sys

SLOW = re.compile(r"^(\S+)\s+WARN .*slow commit .*total_us=(\d+)")


def commit_seconds(log_path, started_ms, threshold_us):
    """Seconds of the run (as `at_s`) in which a commit over the threshold ended."""
    seconds = {}
    with open(log_path, encoding="utf-8") as log:
        for line in log:
            match = SLOW.match(line)
            if not match:
                continue
            total_us = int(match.group(2))
            if total_us < threshold_us:
                continue
            stamp = match.group(1).rstrip("Z")
            when = datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.timezone.utc)
            at_ms = when.timestamp() * 1000 - started_ms
            # The second that ended at `at_s` began a second earlier.
            at_s = int(at_ms // 1000) + 1
            seconds[at_s] = max(seconds.get(at_s, 0), total_us)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threshold-ms", type=float, default=5.0)
    parser.add_argument("runs", nargs="+", help="REPORT.json or REPORT.json:SERVER.log")
    args = parser.parse_args()
    threshold_us = args.threshold_ms * 1000
    table = {}
    for run in args.runs:
        report_path, _, log_path = run.partition(":")
        with open(report_path, encoding="utf-8") as file:
            report = json.load(file)
        machine = {second["at_s"]: second for second in report.get("machine_timeline", [])}
        if not machine:
            sys.exit(f"{report_path}: no machine_timeline (a server at --addr, or an older report)")
        commits = (
            commit_seconds(log_path, report["started_unix_ms"], threshold_us) if log_path else {}
        )
        for second in report["timeline"]:
            if second["phase"] != "measuring" or second["at_s"] not in machine:
                continue
            beside = machine[second["at_s"]]
            steal = max(beside["cpu_steal_ms"], beside["generator_cpu_steal_ms"])
            if steal >= 10:
                cause = "steal"
            elif log_path and (second["at_s"] in commits or second["at_s"] - 1 in commits):
                cause = "slow commit"
            else:
                cause = "none seen"
            slow = second["p99_us"] > threshold_us
            table.setdefault((slow, cause), []).append(second["p99_us"] / 1000)
    total = sum(len(p99s) for p99s in table.values())
    print(f"{total} measured seconds; p99 threshold {args.threshold_ms} ms")
    print("| seconds | cause | count | median p99 ms | worst p99 ms |")
    print("|---|---|---:|---:|---:|")
    for (slow, cause), p99s in sorted(table.items(), key=lambda item: (not item[0][0], item[0][1])):
        kind = "over" if slow else "at most"
        print(
            f"| p99 {kind} {args.threshold_ms:g} ms | {cause} | {len(p99s)} | "
            f"{statistics.median(p99s):.1f} | {max(p99s):.1f} |"
        )


if __name__ == "__main__":
    main()
