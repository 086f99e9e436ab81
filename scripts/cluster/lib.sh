# Shared by the scripts in scripts/cluster/: paths, logging, bounded waits, process control.
# shellcheck shell=bash disable=SC2034  # the variables are used by the sourcing scripts
# shellcheck source=scripts/cluster/versions.sh
source "$(dirname "${BASH_SOURCE[0]}")/versions.sh"

# Where the running cluster keeps everything (certs, etcd data, containerd root, kubelet,
# logs, pid files). Removed by down.sh. The registry's storage stays in the cache.
CLUSTER_DIR=${CLUSTER_DIR:-/var/lib/fastapi-kit/cluster}
NODE_NAME=${NODE_NAME:-fastapi-kit}
BRIDGE=${BRIDGE:-kit0}
NODE_IP=${NODE_IP:-10.88.0.1}
POD_CIDR=${POD_CIDR:-10.88.0.0/16}
SERVICE_CIDR=${SERVICE_CIDR:-10.96.0.0/16}
API_SERVICE_IP=${API_SERVICE_IP:-10.96.0.1}
DNS_SERVICE_IP=${DNS_SERVICE_IP:-10.96.0.10}
API_PORT=${API_PORT:-6443}
ETCD_PORT=${ETCD_PORT:-12379}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-12380}
REGISTRY_PORT=${REGISTRY_PORT:-15000}
REGISTRY_HOST=127.0.0.1:$REGISTRY_PORT
REGISTRY_DIR=${REGISTRY_DIR:-$KIT_CACHE/registry}
KUBECONFIG_OUT=${KUBECONFIG_OUT:-$CLUSTER_DIR/admin.kubeconfig}
PKI=$CLUSTER_DIR/pki
RUN_DIR=$CLUSTER_DIR/run
LOG_DIR=$CLUSTER_DIR/logs
CONTAINERD_SOCK=$CLUSTER_DIR/containerd/containerd.sock
STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
KUBECTL=${KUBECTL_BIN:-$KIT_BIN/kubectl}
export CLUSTER_DIR NODE_NAME REGISTRY_HOST KUBECONFIG_OUT

log() { printf '[cluster] %s\n' "$*" >&2; }

# die COMPONENT MESSAGE: name the component, print the tail of its log, exit 1.
die() {
  local component=$1
  shift
  printf '[cluster] FAILED: %s: %s\n' "$component" "$*" >&2
  if [ -f "$LOG_DIR/$component.log" ]; then
    printf '[cluster] --- last 40 lines of %s ---\n' "$LOG_DIR/$component.log" >&2
    tail -n 40 "$LOG_DIR/$component.log" >&2
    printf '[cluster] --- end of %s log ---\n' "$component" >&2
  fi
  exit 1
}

# wait_until COMPONENT SECONDS WHAT CMD...: poll CMD (every 0.5 s) until it succeeds;
# prints what it waits for; on timeout, or when COMPONENT's process died, dies.
wait_until() {
  local component=$1 timeout=$2 what=$3
  shift 3
  log "waiting up to ${timeout}s for $what"
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ -f "$RUN_DIR/$component.pid" ] && ! running "$component"; then
      die "$component" "process exited while waiting for $what"
    fi
    [ $SECONDS -ge $deadline ] && die "$component" "timed out after ${timeout}s waiting for $what"
    sleep 0.5
  done
}

pid_of() { cat "$RUN_DIR/$1.pid" 2>/dev/null || true; }

running() {
  local pid
  pid=$(pid_of "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# start COMPONENT CMD...: run CMD in its own session, output to logs/COMPONENT.log.
start() {
  local component=$1
  shift
  if running "$component"; then
    log "$component already running (pid $(pid_of "$component"))"
    return 0
  fi
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  log "starting $component"
  setsid "$@" >>"$LOG_DIR/$component.log" 2>&1 < /dev/null &
  echo $! >"$RUN_DIR/$component.pid"
}

# stop COMPONENT [SECONDS]: SIGTERM, bounded wait, then SIGKILL (the process group too).
stop() {
  local component=$1 timeout=${2:-20} pid
  pid=$(pid_of "$component")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    log "stopping $component (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$component did not stop in ${timeout}s: SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$RUN_DIR/$component.pid"
}

kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_OUT" "$@"; }

require_root() {
  [ "$(id -u)" = 0 ] || { log "the local cluster needs root (kubelet, containerd, network)"; exit 1; }
}

# Host settings the cluster changes (kubelet: kernel.* and vm.*; CNI bridge: ip_forward),
# saved by up.sh and restored by down.sh.
RESTORED_SYSCTLS="net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom kernel.keys.root_maxkeys
kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet"
# Host paths the components create outside $CLUSTER_DIR (removed by down.sh when absent before).
CREATED_PATHS="/run/containerd /run/netns /var/run/netns /var/lib/cni /var/log/containers /var/log/pods
/var/run/kubernetes /var/lib/kubelet /etc/cni /opt/cni /etc/kubernetes /var/lib/containerd"

# write_if_changed FILE < content: leave FILE alone when it already holds the content (a
# running kube-proxy exits when its config file changes; containerd watches the CNI dir).
write_if_changed() {
  local tmp="$1.new"
  cat >"$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}
