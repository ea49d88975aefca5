#!/usr/bin/env bash
# The quickstart, the way users install: the local control plane, `helm install` of the chart
# (CRD, RBAC, the operator Deployment, which is a kwok pod and does not run), then the operator as a
# local process with the chart's configuration and only its ServiceAccount's token, and one
# VisionModel until Ready.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=${VLM_CLUSTER_DIR:-$ROOT/.cluster}
EXAMPLE=${1:-examples/qwen2.5-vl-7b.yaml}
RELEASE=vlm-operator
NAMESPACE=vlm-system
export PATH="$ROOT/.venv/bin:$PATH"

say() { printf '\n==> %s\n' "$*" >&2; }

source e2e/cluster/versions.env
HELM=${HELM:-${XDG_CACHE_HOME:-$HOME/.cache}/vlm-operator/helm-$HELM_VERSION/helm}
[[ -x $HELM ]] || { say "helm $HELM_VERSION is not built at $HELM: run 'make tools'"; exit 1; }

say "Starting the local control plane (the first run builds Kubernetes from source: about 10 minutes)"
# Not `eval "$(up.sh)"`: that would hide a failed start and go on to unrelated errors.
if ! exports=$(bash e2e/cluster/up.sh); then
  echo "make demo: the local control plane did not start; the cause is printed above" >&2
  exit 1
fi
eval "$exports"

say "Installing the chart: helm install $RELEASE charts/vlm-operator -n $NAMESPACE"
crd=visionmodels.vlm-operator.io
if kubectl get crd $crd >/dev/null 2>&1 &&
  [[ -z $(kubectl get crd $crd -o jsonpath='{.metadata.annotations.meta\.helm\.sh/release-name}') ]]; then
  # A CRD an earlier demo applied with kubectl: adopted as docs/install.md describes.
  kubectl label crd $crd app.kubernetes.io/managed-by=Helm --overwrite >&2
  kubectl annotate crd $crd --overwrite meta.helm.sh/release-name=$RELEASE \
    meta.helm.sh/release-namespace=$NAMESPACE >&2
fi
# Every node here is a GPU node with the GPU taint; kwok pods have fake addresses, so the operator
# must not scrape them.
"$HELM" upgrade --install $RELEASE charts/vlm-operator -n $NAMESPACE --create-namespace \
  --set 'tolerations[0].key=nvidia.com/gpu' --set 'tolerations[0].operator=Exists' \
  --set config.scrapePods=false --force-conflicts --wait --timeout 120s >&2

say "Starting the operator with the chart's identity and configuration (log: $STATE/operator.log)"
if [[ -f $STATE/operator.pid ]] && kill -0 "$(cat "$STATE/operator.pid")" 2>/dev/null; then
  kill "$(cat "$STATE/operator.pid")"
  while kill -0 "$(cat "$STATE/operator.pid")" 2>/dev/null; do sleep 0.2; done
fi
kubectl get configmap $RELEASE-config -n $NAMESPACE -o jsonpath='{.data.config\.yaml}' \
  >"$STATE/operator-config.yaml"
# A kubeconfig of its own: the local cluster's address and CA, and a TokenRequest token of the
# chart's ServiceAccount as the only credential.
OPERATOR_KUBECONFIG=$STATE/operator.kubeconfig
kubectl config view --raw --minify --flatten \
  -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$STATE/cluster-ca.crt"
[[ -s $STATE/cluster-ca.crt ]] || { say "the cluster's kubeconfig has no CA certificate"; exit 1; }
server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
token=$(kubectl create token $RELEASE -n $NAMESPACE --duration=24h)
rm -f "$OPERATOR_KUBECONFIG"
kubectl --kubeconfig "$OPERATOR_KUBECONFIG" config set-cluster local --server="$server" \
  --certificate-authority="$STATE/cluster-ca.crt" --embed-certs >/dev/null
kubectl --kubeconfig "$OPERATOR_KUBECONFIG" config set-credentials $RELEASE --token="$token" >/dev/null
kubectl --kubeconfig "$OPERATOR_KUBECONFIG" config set-context operator --cluster=local \
  --user=$RELEASE >/dev/null
kubectl --kubeconfig "$OPERATOR_KUBECONFIG" config use-context operator >/dev/null
chmod 600 "$OPERATOR_KUBECONFIG"
KUBECONFIG=$OPERATOR_KUBECONFIG nohup vlm-operator run --config "$STATE/operator-config.yaml" \
  --all-namespaces --standalone --metrics-address 127.0.0.1 >"$STATE/operator.log" 2>&1 &
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

The operator keeps running (pid $(cat "$STATE/operator.pid")) as
system:serviceaccount:$NAMESPACE:$RELEASE. Try:
  export KUBECONFIG=$KUBECONFIG
  kubectl describe vlm $NAME
  kubectl scale vlm $NAME --replicas=3
Stop everything with: make cluster-down
MSG
