#!/bin/bash
# Measures every target of issue 9 at one build: one_task closed loop (5 s after 2 s) and open
# loop at 50,000/s (15 s after 3 s), alternated RUNS times (default 8); ten_tasks twice (8 s
# after 2 s); then one shard against two, 3 times (2,048 in flight per shard, 12 s after
# 3 s). Each run's JSON and log go to OUT_DIR; a line per run goes to standard output
# (instances/s and p99 µs, as the run's Markdown table has them).
#
#   bench/scripts/targets.sh OUT_DIR [RUNS]
#
# Run from the repository root after `cargo build --release -p ringflow-shard -p
# ringflow-bench`, with nothing else running: the VM's CPUs are shared by the server and the
# generator, so anything else moves the figures. Takes about 7 minutes with 8 runs.
set -euo pipefail
OUT=${1:?output folder}
RUNS=${2:-8}
B=./target/release/ringflow-bench
if [ ! -x "$B" ] || [ ! -x ./target/release/ringflow ]; then
  echo "build first: cargo build --release -p ringflow-shard -p ringflow-bench" >&2
  exit 2
fi
mkdir -p "$OUT/scaling"
# One line per run: its name, instances/s and p99 µs from the Markdown table it printed.
run() {
  local name=$1
  shift
  "$B" run "$@" --cold-store none --quiet --json "$OUT/$name.json" > "$OUT/$name.log" 2>&1
  echo "$(date -u +%H:%M:%S) $name $(grep '^| ' "$OUT/$name.log" | tail -1 | awk -F'|' '{print $6, $10}')"
}
for i in $(seq 1 "$RUNS"); do
  run "closed-$i" --scenario one_task --warmup 2s --duration 5s
  run "open-$i" --scenario one_task --rate 50000 --warmup 3s --duration 15s
done
for i in 1 2; do
  run "ten_tasks-$i" --scenario ten_tasks --warmup 2s --duration 8s
done
for i in 1 2 3; do
  run "scaling/one-$i" --scenario one_task --shards 1 --inflight 2048 --warmup 3s --duration 12s
  run "scaling/two-$i" --scenario one_task --shards 2 --inflight 4096 --warmup 3s --duration 12s
done
