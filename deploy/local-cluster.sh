#!/usr/bin/env bash
# A three-node ringflow cluster on one machine: nodes 0, 1 and 2 listen on 127.0.0.1,
# 127.0.0.2 and 127.0.0.3 (Linux routes all of 127.0.0.0/8 to the loopback interface), with
# one cluster file. For trying clustering, and for the end-to-end test of it.
#
# Usage: deploy/local-cluster.sh start|stop|status [options]
#   start   write DIR/cluster.toml (unless it exists), start the three nodes in the
#           background and wait until each answers; prints the topology
#   stop    stop the nodes gracefully (SIGTERM: in-flight requests answered, snapshots taken)
#   status  say which nodes run
# Options:
#   --dir DIR           where the cluster file, data, logs and pid files go
#                       [default: ./ringflow-local-cluster]
#   --bin PATH          the ringflow binary [default: target/release/ringflow, else
#                       target/debug/ringflow, of this checkout]
#   --shards N          shards per node, for a new cluster file [default: 1]
#   --port PORT         every node's base port, for a new cluster file [default: 26500]
#   --metrics-port PORT every node's metrics port, on its own address [default: 9600]
#   --cold-store VALUE  passed to each node's --cold-store [default: SQLite per node]
#
# Then, for example:
#   ringflow topology --addr 127.0.0.1:26500
#   ringflow deploy --addr 127.0.0.2:26500 bpmn/models/order-process.bpmn
set -euo pipefail

nodes=3
here="$(cd "$(dirname "$0")" && pwd)"
checkout="$(cd "${here}/.." && pwd)"
dir="./ringflow-local-cluster"
bin=""
shards=""
port=""
metrics_port=9600
cold_store=""

die() {
  echo "local-cluster.sh: $*" >&2
  exit 1
}

command="${1:-}"
[ $# -gt 0 ] && shift
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="${2:?--dir needs a folder}"; shift 2 ;;
    --bin) bin="${2:?--bin needs a path}"; shift 2 ;;
    --shards) shards="${2:?--shards needs a number}"; shift 2 ;;
    --port) port="${2:?--port needs a number}"; shift 2 ;;
    --metrics-port) metrics_port="${2:?--metrics-port needs a number}"; shift 2 ;;
    --cold-store) cold_store="${2:?--cold-store needs a value}"; shift 2 ;;
    -h | --help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

if [ -z "${bin}" ]; then
  for candidate in "${CARGO_TARGET_DIR:-${checkout}/target}/release/ringflow" \
    "${CARGO_TARGET_DIR:-${checkout}/target}/debug/ringflow"; do
    if [ -x "${candidate}" ]; then bin="${candidate}"; break; fi
  done
  [ -n "${bin}" ] || die "no ringflow binary: cargo build --release -p ringflow-shard, or --bin PATH"
fi
[ -x "${bin}" ] || die "--bin ${bin} is not an executable"

host_of() { echo "127.0.0.$(($1 + 1))"; }
pid_of() {
  local file="${dir}/node-$1.pid"
  [ -f "${file}" ] || return 1
  local pid
  pid="$(cat "${file}")"
  kill -0 "${pid}" 2>/dev/null || return 1
  echo "${pid}"
}
base_port() { sed -n 's/^port = //p' "${dir}/cluster.toml" | head -n 1; }
node_shards() { sed -n 's/^shards = //p' "${dir}/cluster.toml" | head -n 1; }

stop_nodes() {
  local status=0
  for node in $(seq 0 $((nodes - 1))); do
    local pid
    if ! pid="$(pid_of "${node}")"; then
      rm -f "${dir}/node-${node}.pid"
      continue
    fi
    kill -TERM "${pid}"
    local waited=0
    while kill -0 "${pid}" 2>/dev/null && [ "${waited}" -lt 300 ]; do
      sleep 0.1
      waited=$((waited + 1))
    done
    if kill -0 "${pid}" 2>/dev/null; then
      kill -KILL "${pid}" 2>/dev/null || true
      echo "node ${node}: did not stop within 30 s of SIGTERM; killed (it recovers from its journal at the next start)"
      status=1
    elif grep -q "stopped; snapshot at LSN" "${dir}/node-${node}.log"; then
      echo "node ${node}: stopped (pid ${pid})"
    else
      echo "node ${node}: exited without a clean stop; see ${dir}/node-${node}.log"
      status=1
    fi
    rm -f "${dir}/node-${node}.pid"
  done
  return "${status}"
}

case "${command}" in
  start)
    mkdir -p "${dir}"
    if [ -f "${dir}/cluster.toml" ]; then
      if [ -n "${shards}${port}" ]; then
        die "${dir}/cluster.toml exists: --shards and --port apply to a new cluster only (remove ${dir} to start afresh)"
      fi
    else
      shards="${shards:-1}"
      port="${port:-26500}"
      case "${shards}${port}" in *[!0-9]*) die "--shards and --port take numbers" ;; esac
      {
        echo "# A local three-node cluster (deploy/local-cluster.sh)."
        for node in $(seq 0 $((nodes - 1))); do
          printf '[[node]]\nhost = "%s"\nport = %s\nshards = %s\n\n' "$(host_of "${node}")" "${port}" "${shards}"
        done
      } >"${dir}/cluster.toml"
    fi
    shards="$(node_shards)"
    port="$(base_port)"
    cpus_total="$(nproc)"
    [ "${shards}" -le "${cpus_total}" ] ||
      die "${shards} shards per node, but this machine has ${cpus_total} CPUs (a node needs a CPU per shard)"
    for node in $(seq 0 $((nodes - 1))); do
      if pid="$(pid_of "${node}")"; then die "node ${node} runs already (pid ${pid}); stop it first"; fi
    done
    for node in $(seq 0 $((nodes - 1))); do
      # The nodes share this machine's CPUs: node n's shards take the next CPUs round-robin.
      cpus=""
      for shard in $(seq 0 $((shards - 1))); do
        cpus="${cpus:+${cpus},}$(((node * shards + shard) % cpus_total))"
      done
      args=(serve --cluster "${dir}/cluster.toml" --node "${node}" --data "${dir}/node-${node}"
        --cpus "${cpus}" --metrics "$(host_of "${node}"):${metrics_port}")
      if [ -n "${cold_store}" ]; then args+=(--cold-store "${cold_store}"); fi
      nohup "${bin}" "${args[@]}" >"${dir}/node-${node}.log" 2>&1 </dev/null &
      echo $! >"${dir}/node-${node}.pid"
    done
    for node in $(seq 0 $((nodes - 1))); do
      addr="$(host_of "${node}"):${port}"
      waited=0
      until "${bin}" topology --addr "${addr}" >/dev/null 2>&1; do
        if ! pid_of "${node}" >/dev/null; then
          echo "node ${node} exited while starting; its log (${dir}/node-${node}.log):" >&2
          tail -n 20 "${dir}/node-${node}.log" >&2 || true
          stop_nodes >/dev/null || true
          exit 1
        fi
        if [ "${waited}" -ge 600 ]; then
          echo "node ${node} did not answer on ${addr} within 60 s; stopping the cluster" >&2
          stop_nodes >/dev/null || true
          exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
      done
      echo "node ${node}: $(host_of "${node}"):${port} (pid $(cat "${dir}/node-${node}.pid"), log ${dir}/node-${node}.log)"
    done
    "${bin}" topology --addr "$(host_of 0):${port}"
    ;;
  stop)
    stop_nodes
    ;;
  status)
    running=0
    for node in $(seq 0 $((nodes - 1))); do
      if pid="$(pid_of "${node}")"; then
        echo "node ${node}: running (pid ${pid})"
        running=$((running + 1))
      else
        echo "node ${node}: stopped"
      fi
    done
    [ "${running}" -eq "${nodes}" ]
    ;;
  *)
    die "usage: local-cluster.sh start|stop|status [--dir DIR] [--bin PATH] [--shards N] [--port PORT] (see --help)"
    ;;
esac
