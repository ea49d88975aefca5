#!/usr/bin/env bash
# Stop the local control plane and every process it started.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
STATE=${VLM_CLUSTER_DIR:-$ROOT/.cluster}
source "$HERE/versions.env"
BIN=${VLM_K8S_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/vlm-operator/k8s-v$K8S_VERSION-kwok-$KWOK_VERSION}
if [[ -x $BIN/kwokctl && -d $STATE/kwok ]]; then
  KWOK_WORKDIR=$STATE/kwok "$BIN/kwokctl" delete cluster --name vlm >/dev/null 2>&1 || true
fi
# Anything still running from this state directory (a crashed start) goes too.
pkill -f -- "$STATE/kwok/" 2>/dev/null || true
rm -f "$STATE/kubeconfig"
echo "cluster: stopped" >&2
