#!/usr/bin/env bash
# Tear the local cluster down and leave nothing behind: every pod sandbox is stopped and
# removed through the CRI (so the CNI plugin releases its veths and addresses), then every
# component is stopped, kube-proxy's and the CNI plugin's iptables rules are removed, the
# mounts under $CLUSTER_DIR and the network namespaces unmounted, the bridge deleted, the
# host's sysctls restored and the kubelet's cgroups removed. Ends with a check that reports
# (and fails on) anything left.
#
#   scripts/cluster/down.sh          (make cluster-down)
#
# The registry's storage and the built binaries stay in $KIT_CACHE; the last run's logs are
# kept in $KIT_CACHE/cluster-logs.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/cluster/lib.sh
source "$here/lib.sh"
require_root
HOST_STATE=$CLUSTER_DIR/host-state

stop kube-controller-manager
stop kube-scheduler
stop kubelet 30
if [ -S "$CONTAINERD_SOCK" ] && running containerd; then
  log "removing every pod sandbox through the CRI (CNI teardown)"
  timeout 120 "$KIT_BIN/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" --timeout 60s rmp -fa >/dev/null 2>&1 \
    || log "crictl rmp -fa failed (continuing)"
fi
stop kube-proxy
stop containerd 30
# Containers whose shim is gone: runc's own state (our root) lists them.
RUNC_ROOT=$CLUSTER_DIR/containerd/runc/k8s.io
if [ -d "$RUNC_ROOT" ]; then
  for c in $(runc --root "$RUNC_ROOT" list -q 2>/dev/null); do
    log "removing leftover container $c"
    runc --root "$RUNC_ROOT" delete --force "$c" 2>/dev/null || true
  done
fi
# Shims of our containerd (matched by our socket path) that outlived it.
for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" || true); do
  log "killing leftover shim pid $pid"
  kill -KILL "$pid" 2>/dev/null || true
done
stop kube-apiserver
stop etcd
stop registry

# --- iptables: kube-proxy's cleanup, then any KUBE-/CNI- chain and the rules jumping to them
if [ -x "$KIT_BIN/kube-proxy" ]; then
  "$KIT_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
fi
clean_iptables() { # clean_iptables iptables|ip6tables
  local ipt=$1 table line chain
  command -v "$ipt" >/dev/null || return 0
  for table in filter nat mangle raw; do
    "$ipt" -t "$table" -S >/dev/null 2>&1 || continue
    # rules in any chain that jump to one of ours
    "$ipt" -t "$table" -S | grep -E -- '-j (KUBE-|CNI-)' | sed 's/^-A /-D /' | while read -r line; do
      eval "$ipt -t $table $line" 2>/dev/null || true
    done
    for chain in $("$ipt" -t "$table" -S | sed -n 's/^-N \(\(KUBE\|CNI\)-[^ ]*\).*/\1/p'); do
      "$ipt" -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $("$ipt" -t "$table" -S | sed -n 's/^-N \(\(KUBE\|CNI\)-[^ ]*\).*/\1/p'); do
      "$ipt" -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}
clean_iptables iptables
clean_iptables ip6tables

# --- mounts under our directory (deepest first) and the network namespaces of our pods
unmount_under() {
  local m
  awk -v d="$1" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done
}
unmount_under "$CLUSTER_DIR"
if [ -f "$HOST_STATE/netns-before" ] || [ -d /run/netns ]; then
  for ns in /run/netns/cni-*; do
    [ -e "$ns" ] || continue
    grep -qx "$ns" "$HOST_STATE/netns-before" 2>/dev/null && continue
    umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
    rm -f "$ns"
  done
fi

# --- network: the bridge (pod veths went with their namespaces)
if ip link show "$BRIDGE" >/dev/null 2>&1; then
  log "deleting bridge $BRIDGE"
  ip link delete "$BRIDGE" || log "could not delete bridge $BRIDGE"
fi

# --- cgroups the kubelet made (cgroupfs driver), deepest first
for ctrl in /sys/fs/cgroup/*/; do
  [ -d "${ctrl}kubepods" ] && find "${ctrl}kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
done

# --- sysctls back to what they were before the first cluster-up
if [ -f "$HOST_STATE/sysctls" ]; then
  while read -r name value; do
    [ -n "$name" ] && sysctl -qw "$name=$value" 2>/dev/null || true
  done <"$HOST_STATE/sysctls"
  log "sysctls restored: $(tr '\n' ' ' <"$HOST_STATE/sysctls")"
fi

# --- host paths the components created
if [ -f "$HOST_STATE/absent-paths" ]; then
  while read -r p; do
    [ -n "$p" ] && [ -e "$p" ] && { unmount_under "$p"; rm -rf "$p"; }
  done <"$HOST_STATE/absent-paths"
fi
# symlinks the kubelet left in /var/log/containers pointing into our pod logs
find /var/log/containers -maxdepth 1 -lname "$CLUSTER_DIR/*" -delete 2>/dev/null || true

# --- our directory (logs kept in the cache for a post-mortem)
if [ -d "$LOG_DIR" ]; then
  rm -rf "$KIT_CACHE/cluster-logs"
  mkdir -p "$KIT_CACHE"
  cp -r "$LOG_DIR" "$KIT_CACHE/cluster-logs" 2>/dev/null || true
fi
rm -rf "$CLUSTER_DIR"
rmdir "$(dirname "$CLUSTER_DIR")" 2>/dev/null || true

# --- check: nothing left
left=()
# every process of ours names the binary cache or our directory on its command line
pids=$(pgrep -f "^$KIT_BIN/|$CLUSTER_DIR/" | grep -vx "$$" || true)
[ -n "$pids" ] && left+=("processes: $(ps -o pid=,args= -p "$(echo "$pids" | paste -sd,)" | cut -c1-120)")
grep -q " $CLUSTER_DIR" /proc/self/mounts && left+=("mounts under $CLUSTER_DIR")
ip link show "$BRIDGE" >/dev/null 2>&1 && left+=("bridge $BRIDGE")
iptables-save 2>/dev/null | grep -qE '(KUBE|CNI)-' && left+=("iptables rules")
if [ ${#left[@]} -gt 0 ]; then
  log "FAILED: left behind: ${left[*]}"
  exit 1
fi
log "cluster down: no process, mount, netns, bridge or iptables rule left"
