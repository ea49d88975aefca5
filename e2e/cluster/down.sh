#!/usr/bin/env bash
# Stop the local control plane started by up.sh and every process it started, then check that none
# is left. Safe to run when nothing is running.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
STATE=${VLM_CLUSTER_DIR:-$ROOT/.cluster}
[[ -d $STATE ]] || { echo "cluster: nothing to stop (no $STATE)" >&2; exit 0; }
STATE=$(cd "$STATE" && pwd)
source "$HERE/versions.env"
BIN=${VLM_K8S_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/vlm-operator/k8s-v$K8S_VERSION}
CLUSTER=$STATE/kwok/clusters/vlm

# The processes of this cluster: kwokctl runs each component from the cluster's own bin/.
cluster_pids() {
  local pid command
  for pid in $(pgrep -f -- "$CLUSTER/bin/" || true); do
    command=$(ps -o args= -p "$pid" 2>/dev/null || true)
    [[ $command == "$CLUSTER/bin/"* ]] && echo "$pid"
  done
  return 0
}

# Not while up.sh is starting the cluster (up.sh itself calls us with the lock held).
if [[ -z ${VLM_CLUSTER_LOCK_HELD:-} ]]; then
  exec 9>"$STATE/up.lock"
  flock 9
fi
if [[ -x $BIN/kwokctl && -d $CLUSTER ]]; then
  KWOK_WORKDIR=$STATE/kwok "$BIN/kwokctl" delete cluster --name vlm >"$STATE/kwokctl-down.log" 2>&1 ||
    echo "cluster: kwokctl delete failed, see $STATE/kwokctl-down.log" >&2
fi
# A crashed start can leave components kwokctl no longer knows: stop them by their process id.
leftover=$(cluster_pids)
if [[ -n $leftover ]]; then
  echo "cluster: stopping leftover processes $leftover" >&2
  # shellcheck disable=SC2086
  kill $leftover 2>/dev/null || true
  for _ in $(seq 50); do
    [[ -z $(cluster_pids) ]] && break
    sleep 0.1
  done
  leftover=$(cluster_pids)
  # shellcheck disable=SC2086
  [[ -z $leftover ]] || kill -9 $leftover 2>/dev/null || true
fi
rm -rf "$CLUSTER"
rm -f "$STATE/kubeconfig"
if [[ -n $(cluster_pids) ]]; then
  echo "cluster: processes still running: $(cluster_pids)" >&2
  exit 1
fi
echo "cluster: stopped" >&2
