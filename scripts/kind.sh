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
# Everything after `up` runs scripts/cluster/deploy.sh (shared with the local cluster).
# DRY_RUN=1 prints the command sequence ("+ cmd ...") instead of running it.
# Settings (environment): CLUSTER, NAMESPACE, RELEASE, IMAGE (repo:tag), CONTAINER_ENGINE
# (docker|podman: the image reaches the nodes as an archive, `docker image save --platform`
# / `podman save` then `kind load image-archive`), PLATFORM (linux/ARCH of the nodes), KIND,
# KUBECTL, HELM, MAKE, LOCAL_PORT, PROFILE, PROMETHEUS, TIMEOUT.
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

# Everything after the cluster exists is scripts/cluster/deploy.sh, the same script the
# local cluster (make cluster-deploy, tests/cluster) runs; here with TARGET=kind: the image
# goes to the nodes as an archive (`docker image save --platform linux/ARCH` / `podman save`,
# then `kind load image-archive`), which works with both Docker image stores and with podman.
deploy() {
  (
    export DRY_RUN CLUSTER NAMESPACE RELEASE IMAGE CONTAINER_ENGINE KIND KUBECTL HELM MAKE \
      LOCAL_PORT PROFILE TIMEOUT
    TARGET=kind KUBE_CONTEXT="kind-$CLUSTER" VALUES="$KIND_VALUES" HELM_ARGS="${HELM_ARGS:-}" \
      bash "$ROOT/scripts/cluster/deploy.sh" "$@"
  )
}

cmd_deploy() {
  require "$KIND" "$KUBECTL" "$HELM" "$MAKE"
  deploy image load namespace install wait test
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
  HELM_ARGS="--set serviceMonitor.enabled=true --set prometheusRule.enabled=true \
--set grafanaDashboard.enabled=true --set networkPolicy.monitoringNamespace=$MONITORING_NS" \
    deploy install
}

cmd_loadtest() {
  require "$KUBECTL" "$MAKE"
  deploy loadtest
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
