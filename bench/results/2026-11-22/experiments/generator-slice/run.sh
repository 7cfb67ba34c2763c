#!/bin/bash
# Hand-alternated pairs: the generator with (b) and without (a) a 100 us slice.
cd "$(git rev-parse --show-toplevel)"
B=target/release/ringflow-bench
out=out; mkdir -p out
for i in 1 2 3 4 5 6 7 8; do
  if [ $((i % 2)) -eq 1 ]; then order="a b"; else order="b a"; fi
  for s in $order; do
    if [ $s = b ]; then python3 "$(dirname "$0")"/gen_slice.py 24 2>>$out/slices.log & fi
    $B run --scenario one_task --rate 50000 --warmup 3s --duration 15s --cold-store none --quiet --json $out/pair-$i-$s.json > $out/pair-$i-$s.log 2>&1
    wait
    echo "pair $i $s: $(python3 -c "import json; j=json.load(open('$out/pair-$i-$s.json')); print(j['latency_us']['p99'], j['phases']['send_lag_us']['max'], j['server_latency']['requests_over_5ms'])")"
  done
done
