#!/usr/bin/env bash
# The local OCI registry: Debian's docker-registry (distribution 2.8) on 127.0.0.1 only,
# with its own config and storage under the cache (images and charts survive cluster-down).
#
#   scripts/cluster/registry.sh start|stop|status
set -euo pipefail
# shellcheck source=scripts/cluster/lib.sh
source "$(dirname "$0")/lib.sh"

registry_up() { curl -fs -o /dev/null "http://$REGISTRY_HOST/v2/"; }

case "${1:-start}" in
  start)
    if registry_up; then log "registry: answering on $REGISTRY_HOST"; exit 0; fi
    command -v docker-registry >/dev/null || die registry "docker-registry not installed (scripts/tools/cluster-tools.sh)"
    mkdir -p "$REGISTRY_DIR" "$RUN_DIR" "$LOG_DIR"
    write_if_changed "$RUN_DIR/registry.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR
  delete:
    enabled: true
http:
  addr: $REGISTRY_HOST
  headers:
    X-Content-Type-Options: [nosniff]
YAML
    start registry docker-registry serve "$RUN_DIR/registry.yml"
    wait_until registry 30 "the registry on http://$REGISTRY_HOST/v2/" registry_up
    log "registry: http://$REGISTRY_HOST (storage $REGISTRY_DIR)"
    ;;
  stop) stop registry ;;
  status) registry_up ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
