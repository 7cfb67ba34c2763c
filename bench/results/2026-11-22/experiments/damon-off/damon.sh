#!/bin/bash
# Alternates runs with DAMON (kdamond) on and off; restores it to on at the end.
cd "$(git rev-parse --show-toplevel)"
mkdir -p out
B=target/release/ringflow-bench
ST=/sys/kernel/mm/damon/admin/kdamonds/0/state
trap 'echo on > $ST' EXIT
for i in 1 2 3 4 5 6 7 8; do
  if [ $((i % 2)) -eq 1 ]; then order="on off"; else order="off on"; fi
  for s in $order; do
    echo $s > $ST
    sleep 1
    $B run --scenario one_task --rate 50000 --warmup 3s --duration 15s --cold-store none --quiet --json out/pair-$i-$s.json > out/pair-$i-$s.log 2>&1
    echo "pair $i damon $s: $(python3 -c "import json; j=json.load(open('out/pair-$i-$s.json')); print(j['latency_us']['p99'], j['phases']['send_lag_us']['max'], [int(x) for x in j['engine_pace_per_s']])") kdamond=$(pgrep kdamond | head -1)"
  done
done
