#!/usr/bin/env bash
# Build the local control plane from the Go module proxy: kube-apiserver, kube-controller-manager,
# kube-scheduler and etcd from go.mod, kwok and kwokctl from their module. Nothing prebuilt is
# downloaded. Binaries are cached per version; a second run only checks them.
# Prints the binary directory as its last line.
set -euo pipefail
cd "$(dirname "$0")"
source versions.env
BIN=${VLM_K8S_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/vlm-operator/k8s-v$K8S_VERSION-kwok-$KWOK_VERSION}
COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok kwokctl)

stamped() { [[ -x $BIN/kube-apiserver ]] && "$BIN/kube-apiserver" --version | grep -qx "Kubernetes v$K8S_VERSION"; }
complete() { for c in "${COMPONENTS[@]}"; do [[ -x $BIN/$c ]] || return 1; done; stamped; }

if complete; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { echo "go is required (1.26 or newer, with the module proxy)" >&2; exit 1; }
mkdir -p "$BIN"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-trimpath -mod=mod"
started=$SECONDS
echo "Building Kubernetes v$K8S_VERSION from source into $BIN (first run only: about 5-10 minutes on 2 cores)" >&2

# Without these stamps the binaries call themselves v0.0.0-master, which breaks version checks.
minor=$(cut -d. -f2 <<<"$K8S_VERSION")
ldflags="-s -w"
for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $package.gitVersion=v$K8S_VERSION -X $package.gitMajor=1 -X $package.gitMinor=$minor"
  ldflags+=" -X $package.gitTreeState=clean -X $package.buildDate=1970-01-01T00:00:00Z"
done
echo "  kube-apiserver, kube-controller-manager, kube-scheduler" >&2
go build -ldflags "$ldflags" -o "$BIN/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler
echo "  etcd" >&2
go build -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
echo "  kwok and kwokctl $KWOK_VERSION" >&2
GOFLAGS=-trimpath GOBIN="$BIN" go install -ldflags "-s -w" \
  "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"

stamped || { echo "kube-apiserver is not stamped v$K8S_VERSION" >&2; exit 1; }
echo "Built in $((SECONDS - started)) s" >&2
echo "$BIN"
