#!/usr/bin/env bash
# Everything after a cluster exists, shared by the kind workflow (scripts/kind.sh) and the
# local cluster (scripts/cluster/up.sh): build the image, get it to the nodes (load an
# archive or push to a registry), publish the chart, install, wait, helm test, port-forward
# and load test.
#
#   scripts/cluster/deploy.sh STEP...
#     image       build IMAGE (make image, or make image-local when BASE=local)
#     load        save IMAGE to an archive (docker/podman/buildah) and import it into the
#                 nodes: `kind load image-archive` (TARGET=kind) or containerd's
#                 `ctr images import` (TARGET=local)
#     push        push IMAGE to REGISTRY as $REGISTRY/fastapi-app:TAG
#     chart-push  helm package + helm push to oci://$REGISTRY/charts
#     namespace   create NAMESPACE, labelled to enforce Pod Security "restricted"
#     install     helm upgrade --install RELEASE CHART into NAMESPACE, --wait
#     wait        rollout status of the release's Deployment
#     test        helm test RELEASE
#     loadtest    kubectl port-forward to the Service + Locust PROFILE through it
#     all         image, load|push, namespace, install, wait, test, loadtest
#
# DRY_RUN=1 prints the commands ("+ cmd ...") instead of running them.
# Settings (environment): TARGET (kind|local), CLUSTER (kind), KUBECONFIG, KUBE_CONTEXT,
# NAMESPACE, RELEASE, IMAGE (repo:tag as built), CONTAINER_ENGINE (docker|podman|buildah),
# BASE (registry|local: the base image of `make image`), REGISTRY (host:port[/path]), TAG,
# CHART (a directory or oci://...), CHART_VERSION, VALUES (files, space-separated),
# HELM_ARGS, KIND, KUBECTL, HELM, MAKE, CTR, CONTAINERD_ADDRESS, LOCAL_PORT, PROFILE,
# LOCUST_ARGS, TIMEOUT, PLATFORM (linux/ARCH of the nodes for `docker image save`; default
# the Docker daemon's architecture).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

DRY_RUN="${DRY_RUN:-0}"
TARGET="${TARGET:-kind}"
CLUSTER="${CLUSTER:-fastapi-app}"
NAMESPACE="${NAMESPACE:-fastapi-app}"
RELEASE="${RELEASE:-fastapi-app}"
IMAGE="${IMAGE:-fastapi-app:dev}"
CONTAINER_ENGINE="${CONTAINER_ENGINE:-docker}"
BASE="${BASE:-registry}"
REGISTRY="${REGISTRY:-}"
TAG="${TAG:-${IMAGE##*:}}"
CHART="${CHART:-helm/fastapi-app}"
CHART_VERSION="${CHART_VERSION:-}"
VALUES="${VALUES-}"
HELM_ARGS="${HELM_ARGS:-}"
KIND="${KIND:-kind}"
KUBECTL="${KUBECTL:-kubectl}"
MAKE="${MAKE:-make}"
CTR="${CTR:-ctr}"
CONTAINERD_ADDRESS="${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}"
LOCAL_PORT="${LOCAL_PORT:-8000}"
PROFILE="${PROFILE:-smoke}"
LOCUST_ARGS="${LOCUST_ARGS:-}"
TIMEOUT="${TIMEOUT:-300s}"
ARCHIVE_DIR="${ARCHIVE_DIR:-${TMPDIR:-/tmp}}"
if [ -z "${KUBE_CONTEXT+x}" ]; then
  if [ "$TARGET" = kind ]; then KUBE_CONTEXT="kind-$CLUSTER"; else KUBE_CONTEXT=""; fi
fi

log() { printf '==> %s\n' "$*" >&2; }

run() {
  if [ "$DRY_RUN" = "1" ]; then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    log "$*"
    "$@"
  fi
}

pick_helm() {
  if [ -n "${HELM:-}" ]; then
    printf '%s\n' "$HELM"
  elif command -v helm >/dev/null 2>&1; then
    command -v helm
  elif [ -x "$ROOT/.tools/bin/helm4" ]; then
    printf '%s\n' "$ROOT/.tools/bin/helm4"
  else
    printf '%s\n' helm
  fi
}
HELM="$(pick_helm)"

# podman/buildah storage: where scripts/image.sh builds (vfs unless STORAGE_DRIVER says
# otherwise; STORAGE_DRIVER= empty uses the engine's own default)
STORAGE_DRIVER="${STORAGE_DRIVER-vfs}"
STORAGE=()
[ -n "$STORAGE_DRIVER" ] && STORAGE=(--storage-driver "$STORAGE_DRIVER")

kubectl_() {
  local args=()
  [ -n "$KUBE_CONTEXT" ] && args+=(--context "$KUBE_CONTEXT")
  run "$KUBECTL" "${args[@]}" "$@"
}
helm_ctx() { [ -n "$KUBE_CONTEXT" ] && printf '%s\n' --kube-context "$KUBE_CONTEXT"; return 0; }

image_repo() { printf '%s\n' "${IMAGE%:*}"; }
image_tag() { printf '%s\n' "${IMAGE##*:}"; }

# loopback registries speak plain HTTP; any other is TLS
plain_http() { case "$REGISTRY" in 127.0.0.1:* | localhost:* | "[::1]:"*) return 0 ;; esac; return 1; }

# Name under which the nodes see the image: podman and buildah store unqualified names
# under localhost/.
node_image_repo() {
  local repo
  repo="$(image_repo)"
  if [ "$CONTAINER_ENGINE" != docker ] && [[ "$repo" != */* ]]; then
    printf 'localhost/%s\n' "$repo"
  else
    printf '%s\n' "$repo"
  fi
}

# What the chart's image.repository/tag become: pulled from REGISTRY when one is set (push),
# else the name the nodes know after load.
installed_repo() {
  if [ -n "$REGISTRY" ]; then printf '%s/fastapi-app\n' "$REGISTRY"; else node_image_repo; fi
}
installed_tag() { if [ -n "$REGISTRY" ]; then printf '%s\n' "$TAG"; else image_tag; fi; }

# The chart's fullname (templates/_helpers.tpl): the release name when it contains the
# chart name, else RELEASE-fastapi-app; FULLNAME overrides (fullnameOverride).
fullname() {
  if [ -n "${FULLNAME:-}" ]; then printf '%s\n' "$FULLNAME"
  elif [[ "$RELEASE" == *fastapi-app* ]]; then printf '%s\n' "${RELEASE:0:63}"
  else local f="$RELEASE-fastapi-app"; f="${f:0:63}"; printf '%s\n' "${f%-}"; fi
}

step_image() {
  if [ "$BASE" = local ]; then
    run "$MAKE" image-local "IMAGE=$IMAGE"
  else
    run "$MAKE" image "IMAGE=$IMAGE"
  fi
}

# The platform of the nodes, linux/ARCH: PLATFORM when set, else the Docker daemon's
# architecture (TARGET=kind runs its nodes there), else this machine's (uname -m).
node_platform() {
  if [ -n "${PLATFORM:-}" ]; then printf '%s\n' "$PLATFORM"; return 0; fi
  local arch=""
  if [ "$DRY_RUN" != 1 ] && [ "$CONTAINER_ENGINE" = docker ]; then
    arch="$(docker version --format '{{.Server.Arch}}' 2>/dev/null || true)"
  fi
  if [ -z "$arch" ]; then
    arch="$(uname -m)"
    case "$arch" in
      x86_64) arch=amd64 ;;
      aarch64) arch=arm64 ;;
      armv7l) arch=arm/v7 ;;
      i386 | i686) arch=386 ;;
    esac
  fi
  printf 'linux/%s\n' "$arch"
}

# With Docker's containerd image store (the default of current Docker Engine and Desktop) an
# image built with BuildKit is an index holding a provenance attestation; a plain `docker
# save` leaves that attestation's content out and `kind load image-archive` then fails with
# "content digest ... not found" (kind issues #3795 and #4236). Saving one platform
# (`docker image save --platform`, Docker 28 and newer) writes a complete archive with either
# store. podman and buildah write the same docker-archive format.
docker_save() {
  local archive="$1"
  if [ "$DRY_RUN" = 1 ] || docker image save --help 2>/dev/null | grep -q -- '--platform'; then
    run docker image save --platform "$(node_platform)" -o "$archive" "$IMAGE"
  else
    log "docker image save has no --platform (Docker older than 28): saving every platform;"
    log "with the containerd image store, build with --provenance=false if kind load fails"
    run docker image save -o "$archive" "$IMAGE"
  fi
}

step_load() {
  local archive="$ARCHIVE_DIR/fastapi-app-image-$$.tar" ref
  ref="$(node_image_repo):$(image_tag)"
  case "$CONTAINER_ENGINE" in
    docker) docker_save "$archive" ;;
    podman) run podman "${STORAGE[@]}" save -o "$archive" "$ref" ;;
    buildah) run buildah "${STORAGE[@]}" push "$ref" "docker-archive:$archive:$ref" ;;
    *) log "CONTAINER_ENGINE must be docker, podman or buildah"; exit 2 ;;
  esac
  if [ "$TARGET" = kind ]; then
    run "$KIND" load image-archive "$archive" --name "$CLUSTER"
  else
    run "$CTR" --address "$CONTAINERD_ADDRESS" -n k8s.io images import "$archive"
  fi
  run rm -f "$archive"
}

step_push() {
  [ -n "$REGISTRY" ] || { log "push: set REGISTRY (host:port[/path])"; exit 2; }
  local dest="$REGISTRY/fastapi-app:$TAG"
  case "$CONTAINER_ENGINE" in
    docker)
      run docker tag "$IMAGE" "$dest"
      run docker push "$dest"
      ;;
    *)
      local tls=()
      plain_http && tls=(--tls-verify=false)
      run "$CONTAINER_ENGINE" "${STORAGE[@]}" push "${tls[@]}" \
        "$(node_image_repo):$(image_tag)" "docker://$dest"
      ;;
  esac
}

step_chart_push() {
  [ -n "$REGISTRY" ] || { log "chart-push: set REGISTRY (host:port[/path])"; exit 2; }
  local dir="${ARCHIVE_DIR}/fastapi-app-chart-$$" args=() version
  version="${CHART_VERSION:-$(sed -n 's/^version: *//p' helm/fastapi-app/Chart.yaml)}"
  run mkdir -p "$dir"
  run "$HELM" package helm/fastapi-app --destination "$dir" --version "$version" --app-version "$TAG"
  plain_http && args=(--plain-http)
  run "$HELM" push "$dir/fastapi-app-$version.tgz" "oci://$REGISTRY/charts" "${args[@]}"
  run rm -rf "$dir"
}

step_namespace() {
  if [ "$DRY_RUN" = 1 ] || ! "$KUBECTL" ${KUBE_CONTEXT:+--context "$KUBE_CONTEXT"} get namespace "$NAMESPACE" >/dev/null 2>&1; then
    kubectl_ create namespace "$NAMESPACE"
  fi
  kubectl_ label namespace "$NAMESPACE" --overwrite \
    pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest \
    pod-security.kubernetes.io/warn=restricted pod-security.kubernetes.io/audit=restricted
}

step_install() {
  local args=() v ctx
  for v in $VALUES; do args+=(-f "$v"); done
  case "$CHART" in
    oci://*)
      [ -n "$CHART_VERSION" ] && args+=(--version "$CHART_VERSION")
      case "$CHART" in oci://127.0.0.1:* | oci://localhost:*) args+=(--plain-http) ;; esac
      ;;
  esac
  ctx="$(helm_ctx)"
  # shellcheck disable=SC2086  # HELM_ARGS is a list of words
  run "$HELM" upgrade --install "$RELEASE" "$CHART" ${ctx} \
    --namespace "$NAMESPACE" \
    "${args[@]}" \
    --set "image.repository=$(installed_repo)" \
    --set "image.tag=$(installed_tag)" \
    $HELM_ARGS \
    --wait --timeout "$TIMEOUT"
}

step_wait() {
  kubectl_ -n "$NAMESPACE" rollout status "deployment/$(fullname)" --timeout "$TIMEOUT"
}

step_test() {
  local ctx
  ctx="$(helm_ctx)"
  # shellcheck disable=SC2086
  run "$HELM" test "$RELEASE" ${ctx} --namespace "$NAMESPACE" --logs --timeout "$TIMEOUT"
}

wait_port() {
  local _
  for _ in $(seq 1 60); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$LOCAL_PORT") 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  log "port-forward did not open 127.0.0.1:$LOCAL_PORT within 30 s"
  return 1
}

step_loadtest() {
  local host="http://127.0.0.1:$LOCAL_PORT" svc
  svc="svc/$(fullname)"
  if [ "$DRY_RUN" = "1" ]; then
    kubectl_ -n "$NAMESPACE" port-forward "$svc" "$LOCAL_PORT:8000"
    run "$MAKE" loadtest "HOST=$host" "PROFILE=$PROFILE" ${LOCUST_ARGS:+"LOCUST_ARGS=$LOCUST_ARGS"}
    return 0
  fi
  log "$KUBECTL port-forward $svc $LOCAL_PORT:8000 (background)"
  "$KUBECTL" ${KUBE_CONTEXT:+--context "$KUBE_CONTEXT"} -n "$NAMESPACE" port-forward \
    --address 127.0.0.1 "$svc" "$LOCAL_PORT:8000" >/dev/null &
  local pf=$!
  # shellcheck disable=SC2064  # expand now: stop this port-forward on exit
  trap "kill $pf 2>/dev/null || true" EXIT
  log "waiting up to 30s for the port-forward on 127.0.0.1:$LOCAL_PORT"
  wait_port
  run "$MAKE" loadtest "HOST=$host" "PROFILE=$PROFILE" ${LOCUST_ARGS:+"LOCUST_ARGS=$LOCUST_ARGS"}
}

usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; }

[ $# -gt 0 ] || { usage >&2; exit 2; }
for s in "$@"; do
  case "$s" in
    image | load | push | namespace | install | wait | test | loadtest) "step_$s" ;;
    chart-push) step_chart_push ;;
    all)
      step_image
      if [ -n "$REGISTRY" ]; then step_push; else step_load; fi
      step_namespace
      step_install
      step_wait
      step_test
      step_loadtest
      ;;
    -h | --help | help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
