#!/usr/bin/env bash
# Make the base rootfs tar: debootstrap's minbase variant of $DEBIAN_SUITE plus $BASE_PACKAGES,
# upgraded from -updates and -security, without documentation, manuals, translations or apt's
# package lists. Usage: rootfs.sh OUTPUT.tar (needs root, debootstrap and network to the mirror).
set -euo pipefail
source "$(dirname "$0")/base.env"
output=$1
work=$(mktemp -d "$(dirname "$output")/rootfs.XXXXXX")
# --one-file-system: should debootstrap die with /proc or /sys of the target still mounted.
trap 'rm -rf --one-file-system "$work"' EXIT
root=$work/rootfs

debootstrap --variant=minbase --include="$BASE_PACKAGES" \
  --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
  "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" >"$work/debootstrap.log" \
  || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

cat >"$root/etc/apt/sources.list" <<SOURCES
deb $DEBIAN_MIRROR $DEBIAN_SUITE main
deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main
deb $DEBIAN_SECURITY_MIRROR $DEBIAN_SUITE-security main
SOURCES
# Packages installed later (the build base) leave out the same files; copyrights stay.
cat >"$root/etc/dpkg/dpkg.cfg.d/01-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
DPKG
cat >"$root/etc/apt/apt.conf.d/01-slim" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT

# Security and point-release updates published since the suite's release.
chroot "$root" apt-get update -q >&2
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -q >&2
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/apt/* \
  "$root"/usr/share/man/* "$root"/usr/share/info/*
find "$root/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
# debootstrap copied the build machine's resolver and name; the runtime provides both.
rm -f "$root/etc/resolv.conf" "$root/etc/hostname"

# /dev, /proc and /sys are provided by the runtime; their debootstrap contents stay out.
tar --numeric-owner --xattrs -C "$root" \
  --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* --exclude=./run/* --exclude=./tmp/* \
  -cf "$output.partial" .
mv "$output.partial" "$output"
