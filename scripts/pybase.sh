#!/usr/bin/env bash
# Build (once) a local stand-in for python:3.12-slim, since no container registry can be
# reached here: a minimal Debian bookworm with python3, python3-venv and ca-certificates,
# imported as an image into the vfs storage that buildah and podman share.
#
#   scripts/pybase.sh            # prints the image name, building it when missing
#   PYBASE_IMAGE=... PYBASE_SUITE=... PYBASE_MIRROR=... scripts/pybase.sh
#
# Cached: when the image already exists it is reused (debootstrap takes about a minute).
# Needs root, debootstrap and podman (scripts/tools/image-tools.sh installs them).
set -euo pipefail

IMAGE="${PYBASE_IMAGE:-localhost/pybase:bookworm}"
SUITE="${PYBASE_SUITE:-bookworm}"
# No mirror by default: debootstrap uses its own default; PYBASE_MIRROR=URL picks another one.
MIRROR="${PYBASE_MIRROR:-}"
STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}"

log() { printf 'pybase.sh: %s\n' "$*" >&2; }

podman_() { podman --storage-driver "$STORAGE_DRIVER" "$@"; }

if podman_ image exists "$IMAGE"; then
  log "$IMAGE already present (cached)"
  printf '%s\n' "$IMAGE"
  exit 0
fi

for tool in debootstrap podman; do
  command -v "$tool" >/dev/null 2>&1 || {
    log "$tool not found: run scripts/tools/image-tools.sh as root"
    exit 1
  }
done
[ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 1; }

work="$(mktemp -d /var/tmp/pybase.XXXXXX)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
log "debootstrapping $SUITE into $rootfs (about a minute)"
mirror_arg=()
[ -n "$MIRROR" ] && mirror_arg=("$MIRROR")
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$SUITE" "$rootfs" "${mirror_arg[@]}" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  log "debootstrap failed"
  exit 1
}
# Slim it like the official image: no apt lists or package caches, no docs.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
  "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
  "$rootfs"/usr/share/locale/*
# An image config close to python:3.12-slim's.
log "importing as $IMAGE"
tar -C "$rootfs" --numeric-owner -c . | podman_ import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$IMAGE" >/dev/null
podman_ image exists "$IMAGE"
log "built $IMAGE"
printf '%s\n' "$IMAGE"
