#!/usr/bin/env bash
# Container image tools for the image tests and `make image` without a Docker engine:
# buildah (build + run), podman (image import for the debootstrapped base), debootstrap
# (the python:3.12-slim stand-in). Rootful vfs storage with chroot isolation needs no
# uidmap or fuse-overlayfs; the tests' mount/umount come from util-linux (essential).
# hadolint and shellcheck come from the dev environment (.venv), not from here.
# Idempotent. In CI a missing tool is a failure; elsewhere without root it only says
# how to install it.
set -euo pipefail

# command -> Debian package
declare -A want=(
  [buildah]=buildah
  [podman]=podman
  [debootstrap]=debootstrap
)
need=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || need+=("${want[$cmd]}")
done
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "image-tools: missing ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 0
fi
echo "image-tools: installing ${need[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "image-tools: $cmd still missing" >&2; exit 1; }
done
