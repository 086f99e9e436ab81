#!/usr/bin/env bash
# Build the service image: `docker build` when a Docker engine answers (`docker info`
# succeeds), else buildah (rootful, vfs storage, chroot isolation: works without any
# container engine or daemon).
#
#   scripts/image.sh [extra build args...]
#   IMAGE=fastapi-app:dev BASE_IMAGE=python:3.12-slim scripts/image.sh
#
# Environment:
#   IMAGE           tag to build (default fastapi-app:dev)
#   BASE_IMAGE      passed as --build-arg BASE_IMAGE when set (default: the Dockerfile's)
#   CONTEXT         build context (default: the repository)
#   ENGINE          auto | docker | buildah (default auto)
#   STORAGE_DRIVER  buildah storage driver (default vfs)
#   CA_BUNDLE       host CA bundle mounted into buildah RUN steps so pip/uv trust a
#                   TLS-intercepting proxy (default /etc/ssl/certs/ca-certificates.crt
#                   when it exists; set empty to disable)
#   VERSION REVISION  OCI label values (optional)
#   SBOM_DIR        where the image's software bill of materials is written (default build/)
#   SBOM_ONLY=1     write the SBOM and stop (no image build)
#
# Before the build, a CycloneDX 1.5 SBOM of the Python packages the image installs is written
# from the lock file (`uv export --format cyclonedx1.5 --no-dev --frozen`: exactly what the
# Dockerfile's `uv sync --locked --no-dev` installs) to $SBOM_DIR/<image>.cdx.json.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${IMAGE:-fastapi-app:dev}"
BASE_IMAGE="${BASE_IMAGE:-}"
CONTEXT="${CONTEXT:-$ROOT}"
ENGINE="${ENGINE:-auto}"
STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}"
CA_BUNDLE="${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}"

log() { printf 'image.sh: %s\n' "$*" >&2; }

SBOM_DIR="${SBOM_DIR:-$ROOT/build}"
sbom="$SBOM_DIR/$(printf '%s' "$IMAGE" | tr '/:@' '___').cdx.json"
uv="$ROOT/.tools/bin/uv"
[ -x "$uv" ] || uv="$(command -v uv || true)"
if [ -z "$uv" ]; then
  log "uv not found (make install puts it in .tools/bin): cannot write the SBOM"
  exit 1
fi
# The same guard as the Dockerfile's, before the SBOM needs the lock file: one line naming
# the fix rather than uv's own message.
if [ ! -f "$CONTEXT/uv.lock" ]; then
  echo "ERROR: uv.lock is missing from the build context: run 'uv lock' and commit uv.lock"
  exit 1
fi
mkdir -p "$SBOM_DIR"
(cd "$CONTEXT" && "$uv" export --format cyclonedx1.5 --preview-features sbom-export \
  --no-dev --frozen --quiet) >"$sbom.tmp"
mv "$sbom.tmp" "$sbom"
log "SBOM (CycloneDX 1.5, from uv.lock) -> $sbom"
if [ "${SBOM_ONLY:-0}" = 1 ]; then
  exit 0
fi

if [ "$ENGINE" = auto ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    ENGINE=docker
  elif command -v buildah >/dev/null 2>&1; then
    ENGINE=buildah
  else
    log "no Docker engine answers and buildah is not installed"
    log "install buildah (scripts/tools/image-tools.sh as root, or apt-get install buildah) or start Docker"
    exit 1
  fi
fi

args=(-f "$CONTEXT/Dockerfile" -t "$IMAGE"
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)")
[ -n "$BASE_IMAGE" ] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
[ -n "${VERSION:-}" ] && args+=(--build-arg "VERSION=$VERSION")
[ -n "${REVISION:-}" ] && args+=(--build-arg "REVISION=$REVISION")

case "$ENGINE" in
  docker)
    log "building $IMAGE with docker"
    exec docker build "${args[@]}" "$@" "$CONTEXT"
    ;;
  buildah)
    command -v buildah >/dev/null 2>&1 || { log "buildah not found"; exit 1; }
    if [ -n "$CA_BUNDLE" ] && [ -f "$CA_BUNDLE" ]; then
      args+=(--volume "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")
    fi
    log "building $IMAGE with buildah (storage $STORAGE_DRIVER, isolation ${BUILDAH_ISOLATION:-chroot})"
    exec buildah --storage-driver "$STORAGE_DRIVER" bud \
      --isolation "${BUILDAH_ISOLATION:-chroot}" "${args[@]}" "$@" "$CONTEXT"
    ;;
  *)
    log "ENGINE must be auto, docker or buildah (got '$ENGINE')"
    exit 2
    ;;
esac
