#!/usr/bin/env bash
# Local kind workflow for the fastapi-app chart.
#
#   scripts/kind.sh up          create the kind cluster (k8s/kind/cluster.yaml)
#   scripts/kind.sh deploy      build the image, load it into kind, install the chart, wait, helm test
#   scripts/kind.sh prometheus  install kube-prometheus-stack and turn on ServiceMonitor/PrometheusRule
#   scripts/kind.sh loadtest    port-forward the Service and run the Locust smoke profile
#   scripts/kind.sh down        delete the cluster
#   scripts/kind.sh all         up, deploy, [prometheus if PROMETHEUS=1], loadtest
#
# DRY_RUN=1 prints the command sequence ("+ cmd ...") instead of running it.
# Settings (environment): CLUSTER, NAMESPACE, RELEASE, IMAGE (repo:tag), CONTAINER_ENGINE
# (docker|podman), KIND, KUBECTL, HELM, MAKE, LOCAL_PORT, PROFILE, PROMETHEUS, TIMEOUT.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DRY_RUN="${DRY_RUN:-0}"
CLUSTER="${CLUSTER:-fastapi-app}"
NAMESPACE="${NAMESPACE:-fastapi-app}"
RELEASE="${RELEASE:-fastapi-app}"
IMAGE="${IMAGE:-fastapi-app:dev}"
CONTAINER_ENGINE="${CONTAINER_ENGINE:-docker}"
KIND="${KIND:-kind}"
KUBECTL="${KUBECTL:-kubectl}"
MAKE="${MAKE:-make}"
LOCAL_PORT="${LOCAL_PORT:-8000}"
PROFILE="${PROFILE:-smoke}"
PROMETHEUS="${PROMETHEUS:-0}"
TIMEOUT="${TIMEOUT:-300s}"
CHART="helm/fastapi-app"
KIND_VALUES="$CHART/values-kind.yaml"
MONITORING_NS="monitoring"

log() { printf '==> %s\n' "$*" >&2; }

# Print (dry run) or run one command.
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

require() {
  [ "$DRY_RUN" = "1" ] && return 0
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || { log "missing '$tool' on PATH"; exit 1; }
  done
}

image_repo() { printf '%s\n' "${IMAGE%:*}"; }
image_tag() { printf '%s\n' "${IMAGE##*:}"; }

# Name under which the nodes see the image: podman stores unqualified names under localhost/.
node_image_repo() {
  if [ "$CONTAINER_ENGINE" = "podman" ] && [[ "$(image_repo)" != */* ]]; then
    printf 'localhost/%s\n' "$(image_repo)"
  else
    image_repo
  fi
}

cluster_exists() {
  [ "$DRY_RUN" = "1" ] && return 1
  "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER"
}

cmd_up() {
  require "$KIND" "$KUBECTL"
  if cluster_exists; then
    log "cluster $CLUSTER already exists"
  else
    run "$KIND" create cluster --name "$CLUSTER" --config k8s/kind/cluster.yaml --wait 120s
  fi
  run "$KUBECTL" cluster-info --context "kind-$CLUSTER"
}

load_image() {
  if [ "$CONTAINER_ENGINE" = "docker" ]; then
    run "$KIND" load docker-image "$IMAGE" --name "$CLUSTER"
  else
    local archive="${TMPDIR:-/tmp}/fastapi-app-image.tar"
    run "$CONTAINER_ENGINE" save -o "$archive" "$(node_image_repo):$(image_tag)"
    run "$KIND" load image-archive "$archive" --name "$CLUSTER"
    run rm -f "$archive"
  fi
}

helm_install() {
  # extra args are appended (e.g. the monitoring switches)
  run "$HELM" upgrade --install "$RELEASE" "$CHART" \
    --kube-context "kind-$CLUSTER" \
    --namespace "$NAMESPACE" \
    -f "$KIND_VALUES" \
    --set "image.repository=$(node_image_repo)" \
    --set "image.tag=$(image_tag)" \
    "$@" \
    --wait --timeout "$TIMEOUT"
}

cmd_deploy() {
  require "$KIND" "$KUBECTL" "$HELM" "$MAKE"
  run "$MAKE" image "IMAGE=$IMAGE"
  load_image
  # The namespace enforces the Pod Security Standard "restricted".
  run "$KUBECTL" --context "kind-$CLUSTER" apply -f k8s/base/namespace.yaml
  helm_install
  run "$KUBECTL" --context "kind-$CLUSTER" -n "$NAMESPACE" rollout status "deployment/$RELEASE" --timeout "$TIMEOUT"
  run "$HELM" test "$RELEASE" --kube-context "kind-$CLUSTER" --namespace "$NAMESPACE" --logs
}

cmd_prometheus() {
  require "$HELM" "$KUBECTL"
  run "$HELM" repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update
  run "$HELM" upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
    --kube-context "kind-$CLUSTER" --namespace "$MONITORING_NS" --create-namespace \
    --set prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues=false \
    --set prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false \
    --set grafana.sidecar.dashboards.enabled=true \
    --set grafana.sidecar.dashboards.searchNamespace=ALL \
    --wait --timeout 10m
  helm_install --set serviceMonitor.enabled=true --set prometheusRule.enabled=true \
    --set grafanaDashboard.enabled=true --set "networkPolicy.monitoringNamespace=$MONITORING_NS"
}

wait_port() {
  local i
  for i in $(seq 1 30); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$LOCAL_PORT") 2>/dev/null; then return 0; fi
    sleep 1
  done
  log "port-forward did not open 127.0.0.1:$LOCAL_PORT (try $i)"
  return 1
}

cmd_loadtest() {
  require "$KUBECTL" "$MAKE"
  local host="http://127.0.0.1:$LOCAL_PORT"
  if [ "$DRY_RUN" = "1" ]; then
    run "$KUBECTL" --context "kind-$CLUSTER" -n "$NAMESPACE" port-forward "svc/$RELEASE" "$LOCAL_PORT:8000"
    run "$MAKE" loadtest "HOST=$host" "PROFILE=$PROFILE"
    return 0
  fi
  log "$KUBECTL port-forward svc/$RELEASE $LOCAL_PORT:8000 (background)"
  "$KUBECTL" --context "kind-$CLUSTER" -n "$NAMESPACE" port-forward "svc/$RELEASE" "$LOCAL_PORT:8000" >/dev/null &
  local pf=$!
  # shellcheck disable=SC2064  # expand now: stop this port-forward on exit
  trap "kill $pf 2>/dev/null || true" EXIT
  wait_port
  run "$MAKE" loadtest "HOST=$host" "PROFILE=$PROFILE"
}

cmd_down() {
  require "$KIND"
  run "$KIND" delete cluster --name "$CLUSTER"
}

cmd_all() {
  cmd_up
  cmd_deploy
  if [ "$PROMETHEUS" = "1" ]; then cmd_prometheus; fi
  cmd_loadtest
}

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

main() {
  local cmd="${1:-}"
  case "$cmd" in
    up | deploy | prometheus | loadtest | down | all) "cmd_$cmd" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
