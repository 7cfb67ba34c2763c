#!/usr/bin/env bash
# Checks the Kubernetes manifests: the schemas of Kubernetes 1.31 and 1.37 (strict), their
# consistency with each other, and the configuration they mount against the ringflow binary.
#
# Usage: deploy/kubernetes/check.sh [RINGFLOW_BINARY]
#   RINGFLOW_BINARY  default: $CARGO_TARGET_DIR/debug/ringflow, else target/debug/ringflow
#
# The validator (kubernetes-validate, which bundles the schemas, so no cluster or network
# is needed once it is installed) goes into a virtual environment under
# ~/.cache/ringflow/k8s-venv, installed from PyPI on first use.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
checkout="$(cd "${here}/../.." && pwd)"
binary="${1:-${CARGO_TARGET_DIR:-${checkout}/target}/debug/ringflow}"
venv="${RINGFLOW_K8S_VENV:-${HOME}/.cache/ringflow/k8s-venv}"
validator_version="1.37.0"

[ -x "${binary}" ] || {
  echo "check.sh: no ringflow binary at ${binary}: cargo build -p ringflow-shard" >&2
  exit 1
}
if [ ! -x "${venv}/bin/python" ] ||
  ! "${venv}/bin/python" -c "import kubernetes_validate" 2>/dev/null ||
  [ "$("${venv}/bin/python" -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p')" != "${validator_version}" ]; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" 2>/dev/null; then
    echo "== installing python3-venv (Debian package)"
    if [ "$(id -u)" -eq 0 ]; then sudo_cmd=(); else sudo_cmd=(sudo); fi
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq python3-venv >/dev/null
  fi
  echo "== installing kubernetes-validate ${validator_version} into ${venv}"
  rm -rf "${venv}"
  python3 -m venv "${venv}"
  "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check \
    "kubernetes-validate==${validator_version}"
fi
"${venv}/bin/python" "${here}/check.py" "${binary}"
