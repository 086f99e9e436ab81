#!/usr/bin/env bash
# Optional add-ons of the running local cluster.
#
#   scripts/cluster/addons.sh metrics-server   build, image, deploy, wait for `kubectl top`
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/cluster/lib.sh
source "$here/lib.sh"

case "${1:-}" in
  metrics-server)
    bash "$here/build.sh" metrics-server
    bash "$here/images.sh" metrics-server
    sed -e "s#@IMAGE@#$REGISTRY_HOST/kit/metrics-server:$METRICS_SERVER_VERSION#" \
      "$here/manifests/metrics-server.yaml" | kc apply -f - >/dev/null || die kube-apiserver "applying metrics-server"
    wait_until kubelet 120 "metrics-server rollout in kube-system" \
      kc -n kube-system rollout status deployment/metrics-server --timeout=5s
    wait_until kube-apiserver 120 "the metrics.k8s.io API to serve node metrics" kc top node "$NODE_NAME"
    log "metrics-server: kubectl top works"
    ;;
  *) echo "usage: $0 metrics-server" >&2; exit 2 ;;
esac
