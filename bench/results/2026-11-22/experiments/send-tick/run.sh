#!/bin/bash
# Hand-alternated pairs: the open-loop generator sending each create when due (a) or the
# creates due in each 100 us tick together (b).
cd "$(git rev-parse --show-toplevel)"
B=target/release/ringflow-bench
out=out; mkdir -p out
for i in 1 2 3 4 5 6 7 8; do
  if [ $((i % 2)) -eq 1 ]; then order="a b"; else order="b a"; fi
  for s in $order; do
    if [ $s = b ]; then tick=100; else tick=0; fi
    $B run --scenario one_task --rate 50000 --warmup 3s --duration 15s --cold-store none --quiet --send-tick-us $tick --json $out/pair-$i-$s.json > $out/pair-$i-$s.log 2>&1
    echo "pair $i $s: $(python3 -c "import json; j=json.load(open('$out/pair-$i-$s.json')); l=j['latency_us']; print(l['p50'], l['p99'], j['server']['cpu_seconds'], j['generator_cpu_seconds'], j['server_latency']['requests_over_2_5ms'])")"
  done
done
