#!/bin/bash
# Alternates the default CPU placement (server 0, generator 1) with the swapped one.
B=${B:-./target/release/ringflow-bench}; S=${S:-./target/release/ringflow}
for i in 1 2 3 4; do
  for v in default swapped; do
    if [ $v = swapped ]; then cpus="--server-cpus 1 --generator-cpus 0"; else cpus=""; fi
    $B run --scenario one_task --rate 50000 --warmup 3s --duration 15s --cold-store none --server-bin $S $cpus --quiet --json $v-$i.json > $v-$i.log 2>&1
    python3 -c "
import json;d=json.load(open('$v-$i.json'));l=d['latency_us'];print('$v', $i, round(d['throughput_per_s']), l.get('p50'), l.get('p99'), l.get('max'), [round(x) for x in d.get('engine_pace_per_s') or []])"
  done
done
