#!/bin/bash
# N shards on N cores of their own against one shard: the scaling target of issue 9
# (N shards do at least 0.9 x N times one shard's one_task instances/s).
#
#   bench/scripts/scaling.sh OUT_DIR [MAX_SHARDS] [REPS] [COLD_STORES]
#
# The server gets CPUs 0..N-1 for N = 1, 2, 4, ... MAX_SHARDS (default: half the CPUs, at
# most 8); the generator always gets the same CPUs of its own, the upper half of the
# machine. Closed loop, 2,048 instances in flight per shard, 10 s after 3 s. Every shard
# count runs with each cold store of COLD_STORES (default "none sqlite": no history, and the
# default SQLite store, a file per shard), and the whole set REPS times (default 2),
# alternated so that a drift of the machine's speed touches every count alike. Each run's
# JSON and log go to OUT_DIR; a line per run and a table of the means go to standard output:
# for each count, its instances/s and that over N times one shard's (the target: 0.9).
# Then `ringflow-bench export` with MAX_SHARDS exporters (the SQLite store's exporters alone,
# one file shared against a file each; its table goes to OUT_DIR/export.md too).
#
# Run from the repository root after `cargo build --release -p ringflow-shard -p
# ringflow-bench` (or set B and SERVER to the two binaries), with nothing else running, on
# a machine with at least 4 CPUs. Takes about (log2(MAX_SHARDS) + 1) x REPS x 2 x 16 s.
# CPUS and GENERATOR (a CPU list) override what the script finds, for a smoke test on a
# small machine (CPUS=4 GENERATOR=1 ... on two CPUs: figures that mean nothing).
set -euo pipefail
OUT=${1:?output folder}
CPUS=${CPUS:-$(nproc)}
HALF=$((CPUS / 2))
MAX=${2:-$((HALF < 8 ? HALF : 8))}
REPS=${3:-2}
COLD_STORES=${4:-none sqlite}
B=${B:-./target/release/ringflow-bench}
SERVER=${SERVER:-./target/release/ringflow}
if [ ! -x "$B" ] || [ ! -x "$SERVER" ]; then
  echo "build first: cargo build --release -p ringflow-shard -p ringflow-bench (or set B and SERVER)" >&2
  exit 2
fi
if [ "$CPUS" -lt 4 ] || [ "$MAX" -lt 2 ] || [ "$MAX" -gt "$HALF" ]; then
  echo "needs at least 4 CPUs and 2 <= MAX_SHARDS <= half of them ($CPUS CPUs here)" >&2
  exit 2
fi
COUNTS=()
for ((n = 1; n <= MAX; n *= 2)); do COUNTS+=("$n"); done
GENERATOR=${GENERATOR:-$(seq -s, "$HALF" $((CPUS - 1)))}
mkdir -p "$OUT"
MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs || true)
echo "machine: $(nproc) CPUs ($MODEL), Linux $(uname -r), $(date -u +%FT%TZ); shards ${COUNTS[*]} on CPUs from 0; generator CPUs $GENERATOR"
RESULTS="$OUT/runs.txt"
: > "$RESULTS"
for rep in $(seq 1 "$REPS"); do
  for n in "${COUNTS[@]}"; do
    for cold in $COLD_STORES; do
      name="$cold-$n-$rep"
      "$B" run --scenario one_task --shards "$n" --server-cpus "$(seq -s, 0 $((n - 1)))" \
        --generator-cpus "$GENERATOR" --inflight $((2048 * n)) --warmup 3s --duration 10s \
        --server-bin "$SERVER" --cold-store "$cold" --quiet --json "$OUT/$name.json" \
        > "$OUT/$name.log" 2>&1 || { echo "$name failed: see $OUT/$name.log" >&2; exit 1; }
      # instances/s from the run's Markdown table (its 6th column).
      rate=$(grep '^| ' "$OUT/$name.log" | tail -1 | awk -F'|' '{gsub(/[ ,]/, "", $6); print $6}')
      echo "$(date -u +%H:%M:%S) $name $rate"
      echo "$cold $n $rate" >> "$RESULTS"
    done
  done
done
echo
echo "| cold store | shards | runs | mean instances/s | over N x one shard |"
echo "|---|---:|---:|---:|---:|"
awk '
  { sum[$1" "$2] += $3; runs[$1" "$2]++; if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } }
  END {
    for (i = 1; i <= k; i++) {
      cold = order[i]; one = sum[cold" 1"] / runs[cold" 1"]
      for (n = 1; (cold" "n) in sum; n *= 2) {
        mean = sum[cold" "n] / runs[cold" "n]
        printf "| %s | %d | %d | %.0f | %.2f |\n", cold, n, runs[cold" "n], mean, mean / (n * one)
      }
    }
  }' "$RESULTS"
echo
echo "ringflow-bench export, $MAX exporters:"
"$B" export --exporters "$MAX" --instances 50000 --rounds 2 --dir "$OUT/export-stores" \
  2> "$OUT/export.log" | tee "$OUT/export.md"
