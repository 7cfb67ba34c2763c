#!/usr/bin/env bash
# Installs ringflow as a systemd service on this machine:
#   /usr/local/bin/ringflow                  the binary
#   /etc/ringflow/ringflow.toml              the configuration (kept if it exists)
#   /etc/systemd/system/ringflow.service     the unit, with CPUAffinity filled in
#   /var/lib/ringflow                        the data directory, owned by the ringflow user
# then runs `ringflow doctor` as the ringflow user and enables and starts the service.
#
# Usage: deploy/systemd/install.sh [--binary PATH] [--cpus LIST] [--config FILE]
#                                  [--root DIR] [--no-start]
#   --binary PATH  the ringflow binary [default: target/release/ringflow of this checkout;
#                  build it with: cargo build --release -p ringflow-shard --bin ringflow]
#   --cpus LIST    the shards' CPUs, in systemd's CPUAffinity form (for example 1-7 or 2,4,6)
#                  [default: every CPU but CPU 0 on machines with 4 or more CPUs, else all]
#   --config FILE  the configuration to install when /etc/ringflow/ringflow.toml does not
#                  exist yet [default: deploy/systemd/ringflow.toml]
#   --root DIR     stage the files under DIR instead of / (for packaging and tests): no user
#                  is created, nothing is chowned, systemd is not touched
#   --no-start     install and enable, but do not start
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
checkout="$(cd "${here}/../.." && pwd)"
binary="${checkout}/target/release/ringflow"
config="${here}/ringflow.toml"
cpus=""
root=""
start=1

die() {
  echo "install.sh: $*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
    --cpus) cpus="${2:?--cpus needs a list}"; shift 2 ;;
    --config) config="${2:?--config needs a file}"; shift 2 ;;
    --root) root="${2:?--root needs a folder}"; shift 2 ;;
    --no-start) start=0; shift ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

[ -x "${binary}" ] || die "no ringflow binary at ${binary}: build it with
  cargo build --release -p ringflow-shard --bin ringflow
or name one with --binary PATH"
[ -f "${config}" ] || die "no configuration file at ${config}"
if [ -z "${root}" ] && [ "$(id -u)" -ne 0 ]; then
  die "run as root (or stage the files with --root DIR)"
fi

if [ -z "${cpus}" ]; then
  count="$(nproc --all)"
  if [ "${count}" -ge 4 ]; then cpus="1-$((count - 1))"; else cpus="0-$((count - 1))"; fi
fi
case "${cpus}" in
  *[!0-9,-]*) die "--cpus ${cpus}: expected CPU numbers and ranges such as 1-7 or 2,4,6" ;;
esac

# The configuration must be one `ringflow serve` accepts before anything is installed.
"${binary}" serve --config "${config}" --print-config >/dev/null ||
  die "${config} is not a valid configuration (the error is above)"

echo "== installing into ${root:-/}: binary, unit (CPUAffinity=${cpus}), configuration, data directory"
install -d "${root}/usr/local/bin" "${root}/etc/ringflow" "${root}/etc/systemd/system" \
  "${root}/var/lib"
install -m 0755 "${binary}" "${root}/usr/local/bin/ringflow"
if [ -e "${root}/etc/ringflow/ringflow.toml" ]; then
  echo "   keeping the existing ${root}/etc/ringflow/ringflow.toml"
else
  install -m 0644 "${config}" "${root}/etc/ringflow/ringflow.toml"
fi
sed "s/^CPUAffinity=.*/CPUAffinity=${cpus}/" "${here}/ringflow.service" \
  >"${root}/etc/systemd/system/ringflow.service"
chmod 0644 "${root}/etc/systemd/system/ringflow.service"
install -d -m 0750 "${root}/var/lib/ringflow"

if [ -n "${root}" ]; then
  echo "== staged under ${root}; on the target machine: useradd --system ringflow, chown it"
  echo "   /var/lib/ringflow, systemctl daemon-reload, systemctl enable --now ringflow"
  exit 0
fi

if ! id ringflow >/dev/null 2>&1; then
  echo "== creating the system user ringflow"
  useradd --system --home-dir /var/lib/ringflow --no-create-home \
    --shell /usr/sbin/nologin ringflow
fi
chown ringflow:ringflow /var/lib/ringflow

echo "== ringflow doctor, as the ringflow user with the unit's CPUs"
# The unit's LimitMEMLOCK is unlimited and doctor checks the limit it runs under, so raise it
# the same way for this check where this shell may (systemd itself always may).
limits=(prlimit --memlock=unlimited:unlimited --)
if ! prlimit --memlock=unlimited:unlimited -- true 2>/dev/null; then
  echo "   (this shell cannot raise RLIMIT_MEMLOCK; doctor checks the current limit, the unit"
  echo "   raises it to unlimited)"
  limits=()
fi
if ! "${limits[@]}" setpriv --reuid=ringflow --regid=ringflow --init-groups \
  taskset -c "${cpus}" /usr/local/bin/ringflow doctor --config /etc/ringflow/ringflow.toml; then
  die "doctor found problems (above); fix them, then: systemctl enable --now ringflow"
fi

systemctl daemon-reload
if [ "${start}" -eq 1 ]; then
  systemctl enable --now ringflow
  systemctl --no-pager status ringflow || true
  echo "== started: journalctl -u ringflow -f to follow it"
else
  systemctl enable ringflow
  echo "== enabled, not started: systemctl start ringflow"
fi
