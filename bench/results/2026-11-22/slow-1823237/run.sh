#!/bin/bash
# 4 closed and 4 open runs alternated, with the engine's pace probed before and after each.
B=${B:-./target/release/ringflow-bench}; S=${S:-./target/release/ringflow}
for i in 1 2 3 4; do
  $B run --scenario one_task --warmup 2s --duration 5s --cold-store none --server-bin $S --quiet --json closed-$i.json > closed-$i.log 2>&1
  $B run --scenario one_task --rate 50000 --warmup 3s --duration 15s --cold-store none --server-bin $S --quiet --json open-$i.json > open-$i.log 2>&1
done
