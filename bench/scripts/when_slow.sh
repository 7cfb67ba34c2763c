#!/bin/bash
# Waits for this VM's CPU to be at its slow speed, then measures one_task there: 4 closed-loop
# runs of 5 s and 4 open-loop runs of 15 s at 50,000/s, alternated, into OUT_DIR.
#
#   bench/scripts/when_slow.sh OUT_DIR [MINUTES] [THRESHOLD]
#
# Run from the repository root after `cargo build --release -p ringflow-shard -p
# ringflow-bench`, with nothing else running. Every 45 s it measures the engine alone on CPU 0
# for 2 s (`ringflow-bench engine`); when two probes in a row are under THRESHOLD instances/s
# (default 450,000: the slow speed reads about 370,000 to 440,000, the fast one 600,000 to
# 840,000) it runs the series and exits 0. It gives up after MINUTES (default 60) and exits
# 1. Every probe goes to OUT_DIR/pace.log. The runs' JSON says the pace before and after each
# run (`engine_pace_per_s`): a run that starts slow may not stay slow.
set -euo pipefail
OUT=${1:?output folder}
MINUTES=${2:-60}
THRESHOLD=${3:-450000}
B=./target/release/ringflow-bench
S=./target/release/ringflow
if [ ! -x "$B" ] || [ ! -x "$S" ]; then
  echo "build first: cargo build --release -p ringflow-shard -p ringflow-bench" >&2
  exit 2
fi
mkdir -p "$OUT"
end=$(( $(date +%s) + 60 * MINUTES ))
slow=0
while [ "$(date +%s)" -lt "$end" ]; do
  pace=$(taskset -c 0 "$B" engine --seconds 2 | awk '/instances\/s/ {print $2}')
  echo "$(date -u +%H:%M:%S) pace ${pace:-?}" >> "$OUT/pace.log"
  if [ -n "$pace" ] && [ "${pace%.*}" -lt "$THRESHOLD" ]; then slow=$((slow + 1)); else slow=0; fi
  if [ "$slow" -ge 2 ]; then
    echo "$(date -u +%H:%M:%S) slow: measuring" | tee -a "$OUT/pace.log"
    for i in 1 2 3 4; do
      "$B" run --scenario one_task --warmup 2s --duration 5s --cold-store none --server-bin "$S" \
        --quiet --json "$OUT/closed-$i.json" > "$OUT/closed-$i.log" 2>&1
      "$B" run --scenario one_task --rate 50000 --warmup 3s --duration 15s --cold-store none \
        --server-bin "$S" --quiet --json "$OUT/open-$i.json" > "$OUT/open-$i.log" 2>&1
    done
    echo "$(date -u +%H:%M:%S) done" | tee -a "$OUT/pace.log"
    exit 0
  fi
  sleep 45
done
echo "no slow stretch within $MINUTES minutes (see $OUT/pace.log)" >&2
exit 1
