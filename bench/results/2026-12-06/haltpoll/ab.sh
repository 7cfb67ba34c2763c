#!/bin/bash
# The guest's halt polling (haltpoll cpuidle driver, KVM guests): 0, as this VM boots,
# against POLL ns, alternated in pairs of `ringflow-bench run`, as root. Restores 0.
#
#   ab.sh OUT_DIR POLL_NS PAIRS RUN_ARGS...
#
# Run from the repository root after a release build (B and SERVER name other binaries).
set -u
OUT=$1
POLL=$2
PAIRS=$3
shift 3
P=/sys/module/haltpoll/parameters/guest_halt_poll_ns
B=${B:-./target/release/ringflow-bench}
SERVER=${SERVER:-./target/release/ringflow}
mkdir -p "$OUT"
run() { # name poll args...
  local name=$1 poll=$2
  shift 2
  echo "$poll" > "$P"
  "$B" run "$@" --cold-store none --quiet --server-bin "$SERVER" --json "$OUT/$name.json" > "$OUT/$name.log" 2>&1
  echo "$(date -u +%H:%M:%S) $name poll=$(cat "$P") $(grep '^| ' "$OUT/$name.log" | tail -1 | awk -F'|' '{print $6, $10}')"
}
for i in $(seq 1 "$PAIRS"); do
  if [ $((i % 2)) -eq 1 ]; then
    run "pair-$i-off" 0 "$@"
    run "pair-$i-on" "$POLL" "$@"
  else
    run "pair-$i-on" "$POLL" "$@"
    run "pair-$i-off" 0 "$@"
  fi
done
echo 0 > "$P"
echo "restored: $(cat "$P")"
