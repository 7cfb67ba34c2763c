#!/bin/bash
# The generator (and the server it starts) at nice -10 against nice 0, alternated.
B=${B:-./target/release/ringflow-bench}; S=${S:-./target/release/ringflow}
for i in 1 2 3 4; do
  for v in plain nice; do
    if [ $v = nice ]; then pre="nice -n -10"; else pre=""; fi
    $pre $B run --scenario one_task --rate 50000 --warmup 3s --duration 15s --cold-store none --server-bin $S --quiet --json $v-$i.json > $v-$i.log 2>&1
  done
done
