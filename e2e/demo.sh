#!/usr/bin/env bash
# The quickstart: local control plane, the CRD, the operator, and one VisionModel until Ready.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=${VLM_CLUSTER_DIR:-$ROOT/.cluster}
EXAMPLE=${1:-examples/qwen2.5-vl-7b.yaml}
export PATH="$ROOT/.venv/bin:$PATH"

say() { printf '\n==> %s\n' "$*" >&2; }

say "Starting the local control plane (the first run builds Kubernetes from source: about 10 minutes)"
# Not `eval "$(up.sh)"`: that would hide a failed start and go on to unrelated errors.
if ! exports=$(bash e2e/cluster/up.sh); then
  echo "make demo: the local control plane did not start; the cause is printed above" >&2
  exit 1
fi
eval "$exports"

say "Installing the VisionModel CRD"
kubectl apply --server-side -f crds/ >&2
kubectl wait --for=condition=Established crd/visionmodels.vlm-operator.io --timeout=60s >&2

say "Starting the operator (log: $STATE/operator.log)"
if [[ -f $STATE/operator.pid ]] && kill -0 "$(cat "$STATE/operator.pid")" 2>/dev/null; then
  kill "$(cat "$STATE/operator.pid")"
  while kill -0 "$(cat "$STATE/operator.pid")" 2>/dev/null; do sleep 0.2; done
fi
# KWOK pods have fake addresses: the operator must not try to scrape them.
VLM_OPERATOR_SCRAPE_PODS=false nohup vlm-operator run --all-namespaces --standalone --metrics-address 127.0.0.1 \
  >"$STATE/operator.log" 2>&1 &
echo $! >"$STATE/operator.pid"

say "Applying $EXAMPLE"
kubectl apply -f "$EXAMPLE" >&2
NAME=$(kubectl create --dry-run=client -o jsonpath='{.metadata.name}' -f "$EXAMPLE")

say "Waiting for VisionModel/$NAME to become Ready"
kubectl wait --for=condition=Ready "visionmodel/$NAME" --timeout=180s >&2
kubectl get vlm -o wide
say "Plan for $NAME"
kubectl get vlm "$NAME" -o jsonpath='{.status.plan.engineArgs}'; echo
kubectl get deployment,service,poddisruptionbudget,pods -l "vlm-operator.io/visionmodel=$NAME" -o wide
cat <<MSG

The operator keeps running (pid $(cat "$STATE/operator.pid")). Try:
  export KUBECONFIG=$KUBECONFIG
  kubectl describe vlm $NAME
  kubectl scale vlm $NAME --replicas=3
Stop everything with: make cluster-down
MSG
