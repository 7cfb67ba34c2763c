#!/usr/bin/env python3
"""Which side each slow second of `ringflow-bench run` reports belongs to.

    python3 bench/scripts/tail_seconds.py run1.json [run2.json ...] [--limit-ms 5]

For every measured second whose p99 is over the limit, from the report's `timeline` and
`machine_timeline` (a server the generator started, at 87fd524 or later): *steal* when the
hypervisor took time from either CPU; else *server* when at least 0.5% of the second's
requests, job pushes or answer writes took over 5 ms inside the server (read from its
metrics; pushes and writes from 580ace3 on); else *outside* (the server did almost all of
them within 5 ms: the tail is in the network between the processes or in the generator,
whose `send_lag_max_us` is shown). Prints each run's p99
with its counts, then the seconds of each kind with their median p99 and generator lag.
"""
import json
import statistics
import sys

SERVER_SHARE = 0.005


def server_share(machine):
    """The largest share over 5 ms of the server's requests, pushes and answer writes."""
    shares = []
    for name in ("requests", "pushes", "answer_writes"):
        total = machine.get(f"server_{name}", 0)
        if total:
            shares.append(machine.get(f"server_{name}_over_5ms", 0) / total)
    return max(shares, default=0.0)


def main():
    args = sys.argv[1:]
    limit_ms = 5.0
    if "--limit-ms" in args:
        index = args.index("--limit-ms")
        limit_ms = float(args[index + 1])
        del args[index:index + 2]
    kinds = {"steal": [], "server": [], "outside": []}
    good = 0
    for path in args:
        report = json.load(open(path))
        if report["phases"] is None or not report["machine_timeline"]:
            sys.exit(f"{path}: no phases or machine timeline (a run at 87fd524 or later, server started by the generator)")
        counts = {kind: 0 for kind in kinds}
        for second, machine in zip(report["timeline"], report["machine_timeline"]):
            if second["phase"] != "measuring":
                continue
            p99 = second["p99_us"] / 1000
            if p99 <= limit_ms:
                good += 1
                continue
            if machine["cpu_steal_ms"] or machine["generator_cpu_steal_ms"]:
                kind = "steal"
            elif server_share(machine) >= SERVER_SHARE:
                kind = "server"
            else:
                kind = "outside"
            counts[kind] += 1
            kinds[kind].append((p99, second.get("send_lag_max_us", 0) / 1000))
        print(f"{path}: p99 {report['latency_us']['p99'] / 1000:.1f} ms; slow seconds {counts}")
    total = good + sum(len(seconds) for seconds in kinds.values())
    print(f"{total} measured seconds, {good} with p99 at most {limit_ms} ms")
    for kind, seconds in kinds.items():
        if seconds:
            p99s = [p99 for p99, _ in seconds]
            lags = [lag for _, lag in seconds]
            print(f"  {kind}: {len(seconds)} seconds, median p99 {statistics.median(p99s):.1f} ms "
                  f"(max {max(p99s):.1f}), median generator lag {statistics.median(lags):.1f} ms")


if __name__ == "__main__":
    main()
