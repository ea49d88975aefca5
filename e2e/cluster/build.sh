#!/usr/bin/env bash
# Build the local control plane from the Go module proxy: kube-apiserver, kube-controller-manager,
# kube-scheduler and etcd from the pinned go.mod beside this script, kwok and kwokctl from their
# own module. Nothing prebuilt is downloaded. The binaries are cached per Kubernetes version; a
# second run only checks them and takes well under a second.
#
# Prints the binary directory as the last line of stdout; progress goes to stderr.
# Environment: VLM_K8S_BIN overrides the cache directory (GOCACHE and GOMODCACHE are honoured).
set -euo pipefail
cd "$(dirname "$0")"
source versions.env
BIN=${VLM_K8S_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/vlm-operator/k8s-v$K8S_VERSION}
KUBE_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler)
COMPONENTS=("${KUBE_COMPONENTS[@]}" etcd kwok kwokctl)

say() { echo "build: $*" >&2; }

# Complete means: every binary present, each Kubernetes binary stamped with the pinned version
# (unstamped ones call themselves v0.0.0-master and break kwokctl's and helm's version checks),
# and kwokctl of the pinned kwok release.
complete() {
  local dir=$1 component
  for component in "${COMPONENTS[@]}"; do [[ -x $dir/$component ]] || return 1; done
  for component in "${KUBE_COMPONENTS[@]}"; do
    [[ $("$dir/$component" --version 2>/dev/null) == "Kubernetes v$K8S_VERSION" ]] || return 1
  done
  "$dir/kwokctl" --version 2>/dev/null | grep -q "${KWOK_VERSION#v}"
}

if complete "$BIN"; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { say "go 1.26 or newer is required, with the module proxy"; exit 1; }
command -v flock >/dev/null || { say "flock (util-linux) is required"; exit 1; }
mkdir -p "$(dirname "$BIN")"
# One build at a time per cache directory: a second caller waits, then finds the binaries.
exec 9>"$BIN.lock"
if ! flock -n 9; then
  say "another build into $BIN is running; waiting for it"
  flock 9
fi
if complete "$BIN"; then
  echo "$BIN"
  exit 0
fi

export CGO_ENABLED=0 GOTOOLCHAIN=local
STAGING="$BIN.partial"
rm -rf "$STAGING"
mkdir -p "$STAGING"
started=$SECONDS
step="preparing"
say "Building Kubernetes v$K8S_VERSION, etcd and kwok $KWOK_VERSION from the Go module proxy"
say "into $BIN. This happens once per version and takes about 10 minutes on 2 cores;"
say "later starts reuse the binaries and take seconds."
# A heartbeat, so a long compile never looks like a hang.
(
  while sleep 60; do
    say "  ... still building ($(((SECONDS - started) / 60)) min so far)"
  done
) >&2 &
heartbeat=$!
stop_heartbeat() {
  # Its sleep first (the loop then ends), so nothing keeps the caller's stderr pipe open.
  pkill -P "$heartbeat" 2>/dev/null || true
  kill "$heartbeat" 2>/dev/null || true
  wait "$heartbeat" 2>/dev/null || true
}
trap 'stop_heartbeat; rm -rf "$STAGING"' EXIT

timed() {
  local label=$1 begin=$SECONDS
  shift
  say "  $label"
  "$@"
  echo "$label: $((SECONDS - begin)) s" >>"$STAGING/build-info.txt"
}

# The version stamps Kubernetes' own release build sets (hack/lib/version.sh), for both packages
# that carry a version.
minor=$(cut -d. -f2 <<<"$K8S_VERSION")
ldflags="-s -w"
for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $package.gitVersion=v$K8S_VERSION -X $package.gitMajor=1 -X $package.gitMinor=$minor"
  ldflags+=" -X $package.gitTreeState=clean -X $package.buildDate=1970-01-01T00:00:00Z"
done

{
  echo "kubernetes: v$K8S_VERSION"
  echo "etcd: $(go list -mod=readonly -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
  echo "kwok: $KWOK_VERSION"
  echo "go: $(go env GOVERSION)"
} >"$STAGING/build-info.txt"
# -mod=readonly: the committed go.mod/go.sum are the pin; a mismatch fails instead of editing them.
timed "downloading modules" go mod download
timed "compiling kube-apiserver, kube-controller-manager and kube-scheduler" \
  go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$STAGING/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler
timed "compiling etcd" \
  go build -mod=readonly -trimpath -ldflags "-s -w" -o "$STAGING/etcd" go.etcd.io/etcd/server/v3
# kwok's module has no replace directives, so it installs by version, outside our go.mod.
timed "compiling kwok and kwokctl $KWOK_VERSION" \
  env GOBIN="$STAGING" GOFLAGS= go install -trimpath -ldflags "-s -w" \
  "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"

if ! complete "$STAGING"; then
  for component in "${KUBE_COMPONENTS[@]}"; do
    say "$component --version: $("$STAGING/$component" --version 2>&1 || true)"
  done
  say "the binaries are not stamped Kubernetes v$K8S_VERSION (or kwokctl is not $KWOK_VERSION)"
  exit 1
fi
echo "total: $((SECONDS - started)) s" >>"$STAGING/build-info.txt"
rm -rf "$BIN"
mv "$STAGING" "$BIN"
say "built in $(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s:" \
  "$(du -sh "$BIN" | cut -f1) of binaries"
echo "$BIN"
