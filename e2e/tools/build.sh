#!/usr/bin/env bash
# Build the tools the install and GitOps tests drive, from the Go module proxy and Debian's
# packages: helm v4 and v3, Argo CD (one multi-call binary), the kstatus checker in kstatus/ and
# redis-server. Each lands in ~/.cache/vlm-operator/<tool>-<version>/, built once per version.
#
# Usage: build.sh [--check] [TOOL...]
#   TOOL     helm helm3 argocd kstatus redis (default: all, in that order; helm first)
#   --check  build nothing: fail, naming `make tools`, when a tool is missing
# The last line of stdout is a directory of symlinks: helm (v4), helm3, argocd and its role names,
# git-verify-wrapper.sh, kstatus-check, redis-server. Progress goes to stderr.
# Environment: XDG_CACHE_HOME (default ~/.cache); GOCACHE and GOMODCACHE are honoured.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../cluster/versions.env"
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/vlm-operator
export CGO_ENABLED=0 GOTOOLCHAIN=local

say() { echo "tools: $*" >&2; }
fail() {
  say "$*"
  exit 1
}

# --- helm v4 and v3: `go install` by version, stamped as Helm's own Makefile does -------------
helm_dir() { echo "$CACHE/helm-$HELM_VERSION"; }
helm_ok() { [[ $("$1/helm" version --template '{{.Version}}' 2>/dev/null) == "$HELM_VERSION" ]]; }
helm_build() { helm_install "$1" helm.sh/helm/v4 "$HELM_VERSION"; }

helm3_dir() { echo "$CACHE/helm-$HELM3_VERSION"; }
helm3_ok() { [[ $("$1/helm" version --template '{{.Version}}' 2>/dev/null) == "$HELM3_VERSION" ]]; }
helm3_build() { helm_install "$1" helm.sh/helm/v3 "$HELM3_VERSION"; }

helm_install() {
  local staging=$1 module=$2 version=$3
  local ldflags="-s -w -X $module/internal/version.version=$version"
  ldflags+=" -X $module/internal/version.gitTreeState=clean"
  nice -n 10 env GOBIN="$staging" GOFLAGS=-buildvcs=false \
    go install -trimpath -ldflags "$ldflags" "$module/cmd/helm@$version"
}

# --- Argo CD: the wrapper module in argocd/ (upstream's replaces, gitops-engine pinned) ---------
ARGOCD_MODULE=github.com/argoproj/argo-cd/v3
argocd_dir() { echo "$CACHE/argocd-$ARGOCD_VERSION"; }
argocd_ok() {
  [[ -x $1/git-verify-wrapper.sh && -f $1/crds/application-crd.yaml ]] &&
    "$1/argocd" version --client --short 2>/dev/null | grep -q "^argocd: $ARGOCD_VERSION+"
}
argocd_build() {
  local staging=$1 source ldflags
  # The stamps Argo CD's Makefile sets; the tree state and date are fixed so rebuilds match.
  ldflags="-s -w -X $ARGOCD_MODULE/common.version=${ARGOCD_VERSION#v}"
  ldflags+=" -X $ARGOCD_MODULE/common.gitTag=$ARGOCD_VERSION"
  ldflags+=" -X $ARGOCD_MODULE/common.gitTreeState=clean"
  ldflags+=" -X $ARGOCD_MODULE/common.buildDate=1970-01-01T00:00:00Z"
  ldflags+=" -X $ARGOCD_MODULE/common.kubectlVersion=$(cd "$HERE/argocd" &&
    go list -mod=readonly -m -f '{{.Version}}' k8s.io/kubectl)"
  (cd "$HERE/argocd" && nice -n 10 go build -mod=readonly -trimpath -ldflags "$ldflags" \
    -o "$staging/argocd" "$ARGOCD_MODULE/cmd")
  # Run-time files from the module itself (never committed): the CRDs the tests apply, and the
  # wrapper the repo-server runs on every manifest generation.
  source=$(cd "$HERE/argocd" && go list -mod=readonly -m -f '{{.Dir}}' "$ARGOCD_MODULE")
  # (The module cache is read-only and keeps no execute bits.)
  cp -r "$source/manifests/crds" "$staging/crds"
  install -m 0755 "$source/hack/git-verify-wrapper.sh" "$staging/"
  chmod -R u+w "$staging"
}

# --- the kstatus checker: our own source in kstatus/, keyed by its content --------------------
kstatus_dir() {
  local digest
  digest=$(cat "$HERE"/kstatus/{go.mod,go.sum,main.go} | sha256sum | cut -c1-12)
  echo "$CACHE/kstatus-check-$CLI_UTILS_VERSION-$digest"
}
kstatus_ok() {
  local expected="github.com/fluxcd/cli-utils $FLUX_CLI_UTILS_VERSION sigs.k8s.io/cli-utils $CLI_UTILS_VERSION"
  [[ $("$1/kstatus-check" -version 2>/dev/null) == "$expected" ]]
}
kstatus_build() {
  (cd "$HERE/kstatus" && nice -n 10 go build -mod=readonly -trimpath -ldflags "-s -w" \
    -o "$1/kstatus-check" .)
}

# --- redis-server: Debian's packages unpacked, as e2e/prometheus/install.sh does ----------------
REDIS_PACKAGES=(redis-server redis-tools liblzf1 libjemalloc2)
redis_dir() { echo "$CACHE/redis-$REDIS_VERSION"; }
redis_ok() { [[ -x $1/redis-server ]] && "$1/redis-server" --version 2>/dev/null | grep -q "v=$REDIS_VERSION "; }
redis_build() {
  local staging=$1 package
  download() { (cd "$staging" && apt-get download -q "${REDIS_PACKAGES[@]}" >&2); }
  if ! download; then
    say "redis: the package lists lack ${REDIS_PACKAGES[*]}; running apt-get update"
    apt-get update -q >&2 || fail "apt-get update failed (run as root, or run it once yourself)"
    download || fail "apt-get download ${REDIS_PACKAGES[*]} failed"
  fi
  for package in "$staging"/*.deb; do
    dpkg-deb -x "$package" "$staging/root"
    basename "$package" >>"$staging/build-info.txt"
  done
  rm "$staging"/*.deb
  # The unpacked libraries are not on the loader's path: a wrapper puts them there.
  cat >"$staging/redis-server" <<'WRAPPER'
#!/bin/sh
root=$(dirname "$(readlink -f "$0")")/root
LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  exec "$root/usr/bin/redis-server" "$@"
WRAPPER
  chmod +x "$staging/redis-server"
}

# --- building one tool -------------------------------------------------------------------------
staging=""
heartbeat=""
stop_heartbeat() {
  [[ -n $heartbeat ]] || return 0
  # Its sleep first (the loop then ends), so nothing keeps the caller's stderr pipe open.
  pkill -P "$heartbeat" 2>/dev/null || true
  kill "$heartbeat" 2>/dev/null || true
  wait "$heartbeat" 2>/dev/null || true
  heartbeat=""
}
trap 'stop_heartbeat; [[ -z $staging ]] || rm -rf "$staging"' EXIT

# Build TOOL into its cache directory unless it is there and reports the pinned version. One
# build per directory at a time (flock); it is built in DIR.partial and renamed when complete,
# so the directory never exists half-filled.
provide() {
  local tool=$1 dir started=$SECONDS lock
  dir=$("${tool}_dir")
  "${tool}_ok" "$dir" && return 0
  $check_only && fail "$tool is not built (looked for $dir): run \`make tools\`"
  command -v go >/dev/null || fail "go 1.26 or newer is required, with the module proxy"
  mkdir -p "$CACHE"
  exec {lock}>"$dir.lock"
  if ! flock -n "$lock"; then
    say "$tool: another build into $dir is running; waiting for it"
    flock "$lock"
  fi
  if ! "${tool}_ok" "$dir"; then
    staging="$dir.partial"
    rm -rf "$staging"
    mkdir -p "$staging"
    say "$tool: building into $dir"
    # A heartbeat, so a long compile never looks like a hang. Its own stderr is closed, so
    # bash's "Terminated" when it is stopped is not printed; the lines go to fd 3.
    (
      exec 3>&2 2>/dev/null
      while sleep 60; do say "  ... $tool still building ($(((SECONDS - started) / 60)) min so far)" 2>&3; done
    ) &
    heartbeat=$!
    "${tool}_build" "$staging"
    stop_heartbeat
    if ! "${tool}_ok" "$staging"; then
      ls -l "$staging" >&2
      fail "$tool: the result in $staging is incomplete or does not report the pinned version"
    fi
    echo "$tool: $((SECONDS - started)) s, $(go env GOVERSION), $(date -u +%FT%TZ)" >>"$staging/build-info.txt"
    rm -rf "$dir"
    mv "$staging" "$dir"
    staging=""
    say "$tool: built in $(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s"
  fi
  exec {lock}>&-
}

# The bin directory: symlinks into the tools' cache directories, named after their contents.
link_tools() {
  local links=() tool name target digest bindir tmp
  for tool in "$@"; do
    case $tool in
      helm) links+=("helm=$(helm_dir)/helm") ;;
      helm3) links+=("helm3=$(helm3_dir)/helm") ;;
      argocd)
        for name in argocd argocd-application-controller argocd-repo-server; do
          links+=("$name=$(argocd_dir)/argocd")
        done
        links+=("git-verify-wrapper.sh=$(argocd_dir)/git-verify-wrapper.sh")
        ;;
      kstatus) links+=("kstatus-check=$(kstatus_dir)/kstatus-check") ;;
      redis) links+=("redis-server=$(redis_dir)/redis-server") ;;
    esac
  done
  digest=$(printf '%s\n' "${links[@]}" | sha256sum | cut -c1-12)
  bindir="$CACHE/tools-bin-$digest"
  if [[ ! -d $bindir ]]; then
    tmp=$(mktemp -d "$CACHE/tools-bin.XXXXXX")
    for name in "${links[@]}"; do ln -s "${name#*=}" "$tmp/${name%%=*}"; done
    # Another caller may have made the same directory meanwhile; its links are the same.
    mv -T "$tmp" "$bindir" 2>/dev/null || rm -rf "$tmp"
  fi
  echo "$bindir"
}

check_only=false
if [[ ${1:-} == --check ]]; then
  check_only=true
  shift
fi
tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(helm helm3 argocd kstatus redis)
for tool in "${tools[@]}"; do
  declare -F "${tool}_build" >/dev/null || fail "unknown tool $tool (helm helm3 argocd kstatus redis)"
done
for tool in "${tools[@]}"; do provide "$tool"; done
link_tools "${tools[@]}"
