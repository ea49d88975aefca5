#!/usr/bin/env bash
# Start the local control plane on loopback with fake GPU nodes. Idempotent: a healthy cluster is
# reused. Progress goes to stderr; the last line of stdout is `export KUBECONFIG=<path>`.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
STATE=${VLM_CLUSTER_DIR:-$ROOT/.cluster}
FLEET=${VLM_CLUSTER_FLEET:-$HERE/fleet.json}
NAME=vlm
KUBECONFIG_PATH=$STATE/kubeconfig
KUBECTL=$(command -v kubectl)
export KUBECONFIG=$KUBECONFIG_PATH

say() { echo "cluster: $*" >&2; }
healthy() { [[ -f $KUBECONFIG_PATH ]] && "$KUBECTL" get --raw /readyz >/dev/null 2>&1; }

mkdir -p "$STATE"
if healthy; then
  say "reusing the running cluster ($KUBECONFIG_PATH)"
else
  BIN=$(bash "$HERE/build.sh")
  source "$HERE/versions.env"
  export KWOK_WORKDIR=$STATE/kwok
  export KWOK_KUBE_VERSION=v$K8S_VERSION
  export KWOK_KUBE_APISERVER_BINARY=$BIN/kube-apiserver
  export KWOK_KUBE_CONTROLLER_MANAGER_BINARY=$BIN/kube-controller-manager
  export KWOK_KUBE_SCHEDULER_BINARY=$BIN/kube-scheduler
  export KWOK_ETCD_BINARY=$BIN/etcd
  export KWOK_CONTROLLER_BINARY=$BIN/kwok
  export KWOK_KUBECTL_BINARY=$KUBECTL
  "$BIN/kwokctl" delete cluster --name "$NAME" >/dev/null 2>&1 || true
  rm -f "$KUBECONFIG_PATH"
  # Every component listens on 127.0.0.1, and kwok reports 127.0.0.1 as each node's address.
  cat >"$STATE/kwokctl.yaml" <<YAML
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  bindAddress: 127.0.0.1
componentsPatches:
- name: kwok-controller
  extraArgs:
  - {key: node-ip, value: 127.0.0.1, override: true}
YAML
  say "starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok"
  "$BIN/kwokctl" create cluster --name "$NAME" --runtime binary --config "$STATE/kwokctl.yaml" \
    --kubeconfig "$KUBECONFIG_PATH" --wait 120s >"$STATE/kwokctl.log" 2>&1 ||
    { cat "$STATE/kwokctl.log" >&2; exit 1; }
fi

say "ensuring the fake GPU nodes of $(basename "$FLEET")"
python3 "$HERE/nodes.py" "$FLEET" | "$KUBECTL" apply -f - >/dev/null
"$KUBECTL" wait --for=condition=Ready nodes --all --timeout=120s >/dev/null
"$KUBECTL" wait --for=create serviceaccount/default --timeout=60s >/dev/null
say "ready: $("$KUBECTL" get nodes --no-headers | wc -l) GPU nodes"
echo "export KUBECONFIG=$KUBECONFIG_PATH"
