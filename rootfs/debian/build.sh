#!/usr/bin/env bash
# Build the Debian base image: a root filesystem made by debootstrap (minbase plus the packages
# below) into LAYERS_DIR/NAME, a read-only layer that sandboxd stacks instead of the host layer
# (`layers: ["NAME", ...]`; a repository picks it with `base = NAME` in .nightshift/config).
# Unlike the host layer, it is for installing software: as root of the sandbox (--root), apt's
# dpkg, `npm install -g` and `pip install --break-system-packages` write to the sandbox's upper
# layer, and a setup layer keeps what setup installed.
#
#   rootfs/debian/build.sh LAYERS_DIR            prints the layer's name
#
# The name is content-addressed: debian-<suite>-<12 hex digits of the suite and package list>,
# so a changed list makes a new layer and an unchanged one is built once (a re-run prints the
# name at once).  Files are owned by root (0) and the agent (1000) as seen inside the sandbox:
# sandboxes mount layers idmapped.  Needs root, debootstrap and the Debian mirror.
#   NS_DEBIAN_SUITE     default bookworm
#   NS_DEBIAN_MIRROR    default http://deb.debian.org/debian
#   NS_DEBIAN_PACKAGES  default: git ca-certificates curl build-essential python3 python3-pip nodejs npm
set -euo pipefail
umask 022

SUITE=${NS_DEBIAN_SUITE:-bookworm}
MIRROR=${NS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=${NS_DEBIAN_PACKAGES:-git ca-certificates curl build-essential python3 python3-pip nodejs npm}
LAYERS_DIR=${1:?usage: rootfs/debian/build.sh LAYERS_DIR}

die() { echo "rootfs/debian/build.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
[ -d "$LAYERS_DIR" ] || die "$LAYERS_DIR is not a directory"
case "$SUITE" in *[!a-z0-9-]*|'') die "bad suite '$SUITE'" ;; esac

# Sorted and de-duplicated, so that the same set always gives the same name.
pkgs=$(printf '%s\n' $PACKAGES | sort -u | tr '\n' ' ' | sed 's/ $//')
case "$pkgs" in *[!a-z0-9.+\ -]*) die "bad package list '$pkgs'" ;; esac
key=$(printf 'nightshift-debian-v1\n%s\n%s\n' "$SUITE" "$pkgs" | sha256sum | cut -c1-12)
NAME=debian-$SUITE-$key
if [ -f "$LAYERS_DIR/$NAME/etc/nightshift-layer" ]; then
  echo "$NAME"
  exit 0
fi

TMP=$LAYERS_DIR/.build-$NAME
rm -rf "$TMP"
cleanup() {
  umount "$TMP/proc" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
# debootstrap lays down minbase only; apt, inside, resolves the package list (debootstrap's own
# --include handles neither alternatives nor configuration order well: npm fails to configure).
debootstrap --variant=minbase "$SUITE" "$TMP" "$MIRROR" >&2 || die "debootstrap failed (see above)"
printf 'deb %s %s main\n' "$MIRROR" "$SUITE" > "$TMP/etc/apt/sources.list"
# No service may start inside the build.
printf '#!/bin/sh\nexit 101\n' > "$TMP/usr/sbin/policy-rc.d"; chmod 755 "$TMP/usr/sbin/policy-rc.d"
mount -t proc proc "$TMP/proc"
# shellcheck disable=SC2086  # the package list, split on purpose
chroot "$TMP" env DEBIAN_FRONTEND=noninteractive LC_ALL=C sh -c \
  "apt-get update -q && apt-get install -y -q --no-install-recommends $pkgs" >&2 || die "apt-get install failed (see above)"
umount "$TMP/proc"
rm -f "$TMP/usr/sbin/policy-rc.d"

# The agent: uid and gid 1000, as in the host layer.
chroot "$TMP" groupadd --gid 1000 agent
chroot "$TMP" useradd --uid 1000 --gid 1000 --home-dir /home/agent --create-home --shell /bin/bash agent
# What a sandbox mounts or generates itself, and what only makes the layer bigger.
rm -rf "$TMP"/var/cache/apt/archives/*.deb "$TMP"/var/lib/apt/lists/* "$TMP"/dev/* "$TMP"/proc/* "$TMP"/sys/* \
  "$TMP"/tmp/* "$TMP"/run/*
mkdir -p "$TMP/workspace" "$TMP/opt/nightshift/agents"
: > "$TMP/etc/resolv.conf"
echo sandbox > "$TMP/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$TMP/etc/hosts"
# pip: Debian marks its Python externally managed; root of a throw-away sandbox may install
# anyway with --break-system-packages (left as Debian has it, so that the flag means something).
printf 'nightshift debian layer %s suite %s packages %s\n' "$NAME" "$SUITE" "$pkgs" > "$TMP/etc/nightshift-layer"
chmod 0755 "$TMP"
mv -T "$TMP" "$LAYERS_DIR/$NAME" 2>/dev/null || { [ -f "$LAYERS_DIR/$NAME/etc/nightshift-layer" ] || die "cannot move the image into place"; }
trap - EXIT
echo "$NAME"
