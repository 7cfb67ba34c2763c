#!/bin/bash
# Instructions per completed one_task instance in the server, counted by callgrind (this
# VM's perf has no hardware counters; instruction counts do not move with the VM's pace,
# so two builds compare on them where their throughput would not).
#
#   bench/scripts/callgrind_per_instance.sh SERVER_BINARY OUT_DIR [SECONDS]
#
# Run from the repository root after `cargo build --release`. The server runs on CPU 0
# under valgrind (about 50 times slower) with no cold store; the generator keeps 64
# instances in flight. After a 2 s warm-up the counters are zeroed, the measured run lasts
# SECONDS (20), then callgrind dumps. Prints instructions / instances completed in the
# dumped span (the run's timeline, drain included). Leaves the dump (cg.out.1), the
# server's log and the generator's JSON in OUT_DIR. Needs valgrind (apt install valgrind).
set -euo pipefail
BIN=${1:?server binary}
OUT=${2:?output folder}
SECONDS_MEASURED=${3:-20}
BENCH=./target/release/ringflow-bench
ADDR=127.0.0.1:26900
command -v valgrind > /dev/null || { echo "valgrind is not installed (apt install valgrind)" >&2; exit 2; }
[ -x "$BENCH" ] || { echo "$BENCH is missing: cargo build --release -p ringflow-bench" >&2; exit 2; }
rm -rf "$OUT"
mkdir -p "$OUT"
taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" \
  "$BIN" serve --data "$OUT/data" --shards 1 --cold-store none --listen "$ADDR" \
  > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2> /dev/null || true' EXIT
ready=no
for _ in $(seq 1 120); do
  sleep 1
  if "$BENCH" run --addr "$ADDR" --scenario one_task --inflight 64 --warmup 1ms \
       --duration 2s --quiet --json "$OUT/warm.json" > /dev/null 2>&1; then
    ready=yes
    break
  fi
done
[ "$ready" = yes ] || { echo "the server did not answer within 120 s; see $OUT/server.log" >&2; exit 1; }
callgrind_control -z "$SERVER" > /dev/null 2>&1
"$BENCH" run --addr "$ADDR" --scenario one_task --inflight 64 --warmup 1ms \
  --duration "${SECONDS_MEASURED}s" --quiet --json "$OUT/run.json" > /dev/null 2>&1
callgrind_control -d "$SERVER" > /dev/null 2>&1
kill "$SERVER"
wait "$SERVER" 2> /dev/null || true
python3 - "$OUT" <<'PY'
import glob, json, sys
out = sys.argv[1]
instructions = None
for path in glob.glob(out + "/cg.out*"):
    text = open(path, encoding="utf-8", errors="replace").read()
    if "Trigger: dump" in text:
        line = next(l for l in text.splitlines() if l.startswith("totals:"))
        instructions = int(line.split()[1])
if instructions is None:
    sys.exit("no dump from callgrind_control -d in " + out)
report = json.load(open(out + "/run.json", encoding="utf-8"))
instances = sum(second["completed"] for second in report["timeline"])
print(f"{instructions} instructions, {instances} instances: "
      f"{instructions / instances:.0f} instructions per instance")
PY
