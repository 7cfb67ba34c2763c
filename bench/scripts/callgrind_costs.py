#!/usr/bin/env python3
"""Per-function costs from a callgrind dump, per completed instance.

    bench/scripts/callgrind_costs.py DUMP INSTANCES [--top N] [--callers FUNCTION]

DUMP is the `cg.out.1` that bench/scripts/callgrind_per_instance.sh leaves (a dump taken
with `callgrind_control -d`; `callgrind_annotate` 3.19 puts all of such a dump under
`clone`, so this reads the file itself). INSTANCES is the count the script printed.

Without --callers: each function's own instructions (calls excluded), largest first.
With --callers: the instructions spent in every function whose name contains FUNCTION
(calls included), split by the function that called it (`memcpy` by caller, say).
"""
import argparse
import collections
import re
import sys

NAME = re.compile(r"\((\d+)\)(?: (.*))?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump")
    parser.add_argument("instances", type=float)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--callers", metavar="FUNCTION")
    args = parser.parse_args()

    names: dict[str, str] = {}

    def resolve(token: str) -> str:
        # Names are compressed: `(12) name` defines id 12, a later `(12)` refers to it.
        match = NAME.match(token)
        if not match:
            return token
        number, name = match.groups()
        if name:
            names[number] = name
        return names.get(number, token)

    own: collections.Counter[str] = collections.Counter()
    by_caller: collections.Counter[str] = collections.Counter()
    function = callee = None
    call_cost_next = False
    with open(args.dump, encoding="utf-8", errors="replace") as dump:
        for line in dump:
            line = line.rstrip("\n")
            if line.startswith("fn="):
                function = resolve(line[3:])
            elif line.startswith("cfn="):
                callee = resolve(line[4:])
            elif line.startswith("calls="):
                call_cost_next = True
            elif line and (line[0].isdigit() or line[0] in "+-*"):
                fields = line.split()
                if len(fields) < 2 or function is None:
                    continue
                cost = int(fields[1])
                if call_cost_next:
                    # The line after `calls=` is the call's inclusive cost, not the caller's.
                    call_cost_next = False
                    if args.callers and callee and args.callers in callee:
                        by_caller[function] += cost
                else:
                    own[function] += cost
    total = sum(own.values())
    if total == 0:
        sys.exit(f"no costs in {args.dump}")
    per = args.instances
    print(f"total {total:,} instructions, {total / per:,.0f} per instance")
    rows = by_caller if args.callers else own
    for name, cost in rows.most_common(args.top):
        print(f"{cost / per:>12,.0f} {100 * cost / total:5.1f}%  {name[:160]}")


if __name__ == "__main__":
    main()
