#!/usr/bin/env bash
# Regenerate go.mod/go.sum for building the control plane at K8S_VERSION from the Go module proxy.
# k8s.io/kubernetes requires its staging modules at v0.0.0; each gets a replace to its published
# tag v0.<minor>.<patch>, derived from kubernetes' own go.mod so the list never drifts.
set -euo pipefail
cd "$(dirname "$0")"
source versions.env
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
rm -f go.mod go.sum
go mod init vlm-operator.io/e2e/cluster >/dev/null 2>&1
upstream=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
for module in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$upstream"); do
  go mod edit -replace="$module=$module@v0.${K8S_VERSION#1.}"
done
go get -tool \
  "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION" \
  "k8s.io/kubernetes/cmd/kube-controller-manager@v$K8S_VERSION" \
  "k8s.io/kubernetes/cmd/kube-scheduler@v$K8S_VERSION"
# etcd at the version of the etcd client the apiserver links, so client and server agree.
etcd_version=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/client/v3)
go get -tool "go.etcd.io/etcd/server/v3@$etcd_version"
go mod tidy
echo "go.mod pinned to Kubernetes v$K8S_VERSION, etcd $etcd_version" >&2
