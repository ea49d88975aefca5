#!/usr/bin/env bash
# `make images`: the operator and simulator images, built by Debian's buildah (vfs storage, chroot
# isolation: no Docker engine, no daemon, no registry) on a Debian base made by debootstrap, and
# written as OCI archives to build/images/<name>-<version>.oci.tar.
#
# Cached under ~/.cache/vlm-operator/images/: the base rootfs tar (per suite, month and recipe),
# buildah's storage holding the two base images, and each archive under a hash of its inputs, so
# an image whose inputs did not change is copied, not built. Progress goes to stderr; the archive
# paths to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/vlm-operator/images
OUT=$REPO/build/images
started=$SECONDS

say() { echo "images: [$((SECONDS - started)) s] $*" >&2; }

[[ $EUID -eq 0 ]] || { say "run as root: debootstrap and buildah's chroot isolation need it"; exit 1; }

# Debian's buildah and debootstrap, installed when missing (CI starts from a clean machine).
missing=()
for tool in buildah debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] || missing+=(debian-archive-keyring)
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || { say "needs Debian's ${missing[*]}, and apt-get is missing"; exit 1; }
  say "installing ${missing[*]} from Debian"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
fi

mkdir -p "$CACHE" "$OUT"
# One build at a time per cache: a second caller waits, then finds the cached results.
exec 9>"$CACHE/.lock"
flock 9

# Our own storage, so no other buildah or podman configuration on the machine is involved.
RUNROOT=${XDG_RUNTIME_DIR:-/run}/vlm-operator-buildah
bh() { buildah --root "$CACHE/storage" --runroot "$RUNROOT" --storage-driver vfs "$@"; }
has_image() { bh inspect --type image "$1" >/dev/null 2>&1; }
# Working containers left by an interrupted run (only this script, under the lock, uses them).
bh rm --all >/dev/null

# The package version, from the file hatch reads it from.
version_file=$(python3 -c \
  'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["tool"]["hatch"]["version"]["path"])')
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$version_file")
[[ -n $VERSION ]] || { say "no __version__ in $version_file"; exit 1; }

# The bases: the runtime base is the debootstrap rootfs imported into an empty image; the build
# base adds $BUILD_PACKAGES for the build stages. Rebuilt once a month to take in Debian's updates.
source images/base/base.env
recipe=$(cat images/base/base.env images/base/rootfs.sh | sha256sum | cut -c1-12)
BASE_KEY=$DEBIAN_SUITE-$(date -u +%Y%m)-$recipe
BASE_IMAGE=localhost/vlm-base:$BASE_KEY
BUILD_IMAGE=localhost/vlm-build-base:$BASE_KEY
rootfs_tar=$CACHE/debian-$BASE_KEY.rootfs.tar

if ! has_image "$BASE_IMAGE"; then
  if [[ ! -f $rootfs_tar ]]; then
    say "debootstrap $DEBIAN_SUITE minbase + $BASE_PACKAGES from $DEBIAN_MIRROR"
    rm -f "$CACHE"/debian-*.rootfs.tar
    images/base/rootfs.sh "$rootfs_tar"
  fi
  say "importing $rootfs_tar as $BASE_IMAGE"
  container=$(bh from scratch)
  bh add "$container" "$rootfs_tar" / >/dev/null
  bh commit -q --rm "$container" "$BASE_IMAGE" >/dev/null
fi
if ! has_image "$BUILD_IMAGE"; then
  say "making $BUILD_IMAGE: $BUILD_PACKAGES from Debian"
  container=$(bh from --pull-never "$BASE_IMAGE")
  bh run --isolation chroot "$container" -- env DEBIAN_FRONTEND=noninteractive sh -c \
    "apt-get update -q && apt-get install -y -q ${BUILD_PACKAGES//,/ } && rm -rf /var/lib/apt/lists/*" >&2
  bh commit -q --rm "$container" "$BUILD_IMAGE" >/dev/null
fi
# Bases of other keys are stale.
while read -r stale; do
  bh rmi "$stale" >/dev/null
done < <(bh images --format '{{.Name}}:{{.Tag}}' | grep -E '/vlm-(build-)?base:' \
  | grep -vxF -e "$BASE_IMAGE" -e "$BUILD_IMAGE")

# The build stages reach PyPI with the certificate authorities the build machine trusts (it may
# sit behind a TLS-inspecting proxy): its CA bundle is mounted for RUN steps only, in no image.
ca_bundle=/etc/ssl/certs/ca-certificates.crt
ca_mount=()
[[ -f $ca_bundle ]] && ca_mount=(--volume "$ca_bundle:$ca_bundle:ro")

# build_image NAME CONTAINERFILE PATH...: build NAME from CONTAINERFILE with a context of exactly
# CONTAINERFILE and the PATHs (relative to the repository), unless an archive of the same inputs
# is cached; then copy the archive to build/images/.
build_image() {
  local name=$1 containerfile=$2
  shift 2
  local context=$OUT/context/$name key cached archive=$OUT/$name-$VERSION.oci.tar
  rm -rf "$context"
  mkdir -p "$context"
  tar -C "$REPO" --exclude=__pycache__ -cf - "$containerfile" "$@" | tar -C "$context" -xf -
  key=$({
    echo "$BASE_KEY $VERSION"
    sha256sum images/build.sh
    (cd "$context" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -c1-16)
  cached=$CACHE/$name-$VERSION-$key.oci.tar
  if [[ -f $cached ]]; then
    say "$name $VERSION: inputs unchanged, using $cached"
  else
    say "$name $VERSION: building"
    bh build --isolation chroot --pull-never "${ca_mount[@]}" \
      --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg BUILD_IMAGE="$BUILD_IMAGE" \
      --build-arg VERSION="$VERSION" \
      -f "$context/$containerfile" -t "localhost/$name:$VERSION" "$context" >&2
    bh push -q "localhost/$name:$VERSION" "oci-archive:$cached.partial:$name:$VERSION"
    bh rmi "localhost/$name:$VERSION" >/dev/null
    rm -f "$CACHE/$name"-*.oci.tar
    mv "$cached.partial" "$cached"
  fi
  rm -f "$OUT/$name"-*.oci.tar
  cp "$cached" "$archive"
  echo "$archive"
}

build_image vlm-operator images/operator/Containerfile \
  pyproject.toml README.md "$(dirname "$version_file")" images/operator/constraints.txt
build_image vllm-sim images/vllm-sim/Containerfile \
  images/vllm-sim/requirements.txt images/vllm-sim/vllm_sim images/operator/constraints.txt
say "done"
