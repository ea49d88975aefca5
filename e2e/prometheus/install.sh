#!/usr/bin/env bash
# Unpack Debian's prometheus package into a per-user cache, without installing it system-wide
# (`apt-get install` would register and start a service). Idempotent: a working binary is reused.
#
# Progress goes to stderr; the last line of stdout is the absolute path of the prometheus binary:
#   PROMETHEUS=$(bash e2e/prometheus/install.sh | tail -n 1)
# Environment: XDG_CACHE_HOME (default ~/.cache). Needs apt-get and dpkg-deb; runs
# `apt-get update` once when the package lists do not know the package yet.
set -euo pipefail
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/vlm-operator
TARGET=$CACHE/prometheus
BINARY=$TARGET/usr/bin/prometheus

say() { echo "prometheus: $*" >&2; }
fail() {
  say "$*"
  exit 1
}
works() { [[ -x $BINARY ]] && "$BINARY" --version >/dev/null 2>&1; }

for tool in apt-get dpkg-deb flock; do
  command -v "$tool" >/dev/null || fail "$tool not found: this script needs a Debian-based system"
done
mkdir -p "$CACHE"

# One unpack at a time per cache (parallel test sessions may race).
exec 9>"$CACHE/prometheus.lock"
flock 9

if works; then
  say "reusing $BINARY"
  echo "$BINARY"
  exit 0
fi

started=$SECONDS
STAGING=$(mktemp -d "$CACHE/prometheus.staging.XXXXXX")
trap 'rm -rf "$STAGING"' EXIT

download() { (cd "$STAGING" && apt-get download -q prometheus >&2); }
if ! download; then
  say "package lists do not have prometheus yet; running apt-get update"
  apt-get update -q >&2 || fail "apt-get update failed (run as root, or run it once yourself)"
  download || fail "apt-get download prometheus failed"
fi
package=$(find "$STAGING" -maxdepth 1 -name 'prometheus_*.deb' -print -quit)
[[ -n $package ]] || fail "apt-get download left no prometheus_*.deb"
say "unpacking $(basename "$package")"
dpkg-deb -x "$package" "$STAGING/root"
[[ -x $STAGING/root/usr/bin/prometheus ]] || fail "$(basename "$package") has no usr/bin/prometheus"

rm -rf "$TARGET"
mv "$STAGING/root" "$TARGET"
works || fail "$BINARY does not run: $("$BINARY" --version 2>&1 | head -n 1)"
say "$("$BINARY" --version 2>&1 | head -n 1) unpacked in $((SECONDS - started))s"
echo "$BINARY"
