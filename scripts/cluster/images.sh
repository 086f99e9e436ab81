#!/usr/bin/env bash
# Images of the cluster's own parts, built with buildah from the static binaries in
# $KIT_BIN (FROM scratch, non-root) and pushed to the local registry, from where containerd
# pulls them: pause (the sandbox image), CoreDNS, metrics-server.
# Idempotent: an image already in the registry is not rebuilt.
#
#   scripts/cluster/images.sh [pause|coredns|metrics-server]...   (default: pause coredns)
set -euo pipefail
# shellcheck source=scripts/cluster/lib.sh
source "$(dirname "$0")/lib.sh"

# image NAME TAG BINARY [ENTRYPOINT ARGS JSON]
in_registry() {
  curl -fs -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REGISTRY_HOST/v2/kit/$1/manifests/$2"
}

image() {
  local name=$1 tag=$2 bin=$3 ref="$REGISTRY_HOST/kit/$1:$2"
  if in_registry "$name" "$tag"; then log "image $ref: in the registry"; return; fi
  [ -x "$KIT_BIN/$bin" ] || die images "$KIT_BIN/$bin missing (scripts/cluster/build.sh)"
  log "image $ref: building with buildah"
  local b
  b=$(buildah --storage-driver "$STORAGE_DRIVER" from scratch)
  buildah --storage-driver "$STORAGE_DRIVER" copy --chown 65532:65532 "$b" "$KIT_BIN/$bin" "/$bin" >/dev/null
  buildah --storage-driver "$STORAGE_DRIVER" config --entrypoint "[\"/$bin\"]" --user 65532:65532 \
    --label "org.opencontainers.image.title=$name" "$b"
  buildah --storage-driver "$STORAGE_DRIVER" commit --quiet --rm "$b" "localhost/kit/$name:$tag" >/dev/null
  buildah --storage-driver "$STORAGE_DRIVER" push --quiet --tls-verify=false \
    "localhost/kit/$name:$tag" "docker://$ref"
  in_registry "$name" "$tag" || die images "$ref not in the registry after push"
}

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(pause coredns)
for w in "${want[@]}"; do
  case "$w" in
    pause) image pause "$PAUSE_TAG" pause ;;
    coredns) image coredns "$COREDNS_VERSION" coredns ;;
    metrics-server) image metrics-server "$METRICS_SERVER_VERSION" metrics-server ;;
    *) die images "unknown image $w" ;;
  esac
done
