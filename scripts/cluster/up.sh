#!/usr/bin/env bash
# Bring up a single-node Kubernetes cluster on this machine from the real components:
# etcd, kube-apiserver (PodSecurity admission on), kube-controller-manager, kube-scheduler,
# a private containerd (own config, root, state and socket) with runc, the kubelet
# (cgroupfs), the bridge CNI plugin, kube-proxy (iptables) and CoreDNS, plus the OCI
# registry on 127.0.0.1 the images are pulled from.
#
#   scripts/cluster/up.sh        (make cluster-up)   prints the kubeconfig path last
#
# Idempotent: a component that already runs is left alone. Addresses: the node (and the
# API server) on $NODE_IP, the gateway of our own bridge $BRIDGE; pods $POD_CIDR; services
# $SERVICE_CIDR. Everything else listens on 127.0.0.1. Undo with scripts/cluster/down.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/cluster/lib.sh
source "$here/lib.sh"
require_root
t0=$SECONDS

for tool in containerd runc iptables docker-registry buildah openssl curl; do
  command -v "$tool" >/dev/null || die "$tool" "not installed: run scripts/tools/cluster-tools.sh as root"
done
[ -x /usr/lib/cni/bridge ] || die cni "bridge plugin missing: run scripts/tools/cluster-tools.sh as root"
if [ "${SKIP_BUILD:-0}" = 1 ]; then
  log "SKIP_BUILD=1: using the binaries in $KIT_BIN as they are"
else
  bash "$here/build.sh" cluster
fi
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl crictl pause coredns; do
  [ -x "$KIT_BIN/$b" ] || die build "$KIT_BIN/$b missing (scripts/cluster/build.sh)"
done
mkdir -p "$CLUSTER_DIR" "$RUN_DIR" "$LOG_DIR"

# --- what down.sh restores: sysctls the kubelet, the CNI plugin and we change, and which
# host paths existed before (those the components create are removed again).
HOST_STATE=$CLUSTER_DIR/host-state
if [ ! -f "$HOST_STATE/sysctls" ]; then
  mkdir -p "$HOST_STATE"
  for s in $RESTORED_SYSCTLS; do
    [ -e "/proc/sys/${s//.//}" ] && printf '%s %s\n' "$s" "$(sysctl -n "$s")"
  done >"$HOST_STATE/sysctls.tmp"
  for p in $CREATED_PATHS; do [ -e "$p" ] || echo "$p"; done >"$HOST_STATE/absent-paths"
  find /run/netns -maxdepth 1 -name 'cni-*' 2>/dev/null >"$HOST_STATE/netns-before" || true
  mv "$HOST_STATE/sysctls.tmp" "$HOST_STATE/sysctls"
fi

bash "$here/certs.sh"
cp "$PKI/admin.kubeconfig" "$KUBECONFIG_OUT"

# --- network: our bridge, its gateway address is the node's (and API server's) address
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  log "network: bridge $BRIDGE with $NODE_IP/${POD_CIDR#*/}"
  ip link add "$BRIDGE" type bridge
  ip addr add "$NODE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
fi
ip link set "$BRIDGE" up
sysctl -qw net.ipv4.ip_forward=1
sysctl -qw net.bridge.bridge-nf-call-iptables=1

bash "$here/registry.sh" start

# --- etcd (plain HTTP, loopback only)
start etcd "$KIT_BIN/etcd" --name "$NODE_NAME" --data-dir "$CLUSTER_DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "$NODE_NAME=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" \
  --unsafe-no-fsync --log-level warn
wait_until etcd 60 "etcd health on 127.0.0.1:$ETCD_PORT" curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

# --- kube-apiserver
api_ok() { curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://$NODE_IP:$API_PORT/readyz"; }
start kube-apiserver "$KIT_BIN/kube-apiserver" \
  --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction,PodSecurity \
  --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
  --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
  --requestheader-extra-headers-prefix X-Remote-Extra- \
  --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
  --enable-aggregator-routing=true --cert-dir "$RUN_DIR/apiserver" --profiling=false \
  --v=1
wait_until kube-apiserver 120 "kube-apiserver /readyz on https://$NODE_IP:$API_PORT" api_ok

# --- controller-manager and scheduler (loopback only)
start kube-controller-manager "$KIT_BIN/kube-controller-manager" \
  --kubeconfig "$PKI/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$PKI/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$PKI/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --cert-dir "$RUN_DIR/controller-manager" --leader-elect=false \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --use-service-account-credentials=true --service-cluster-ip-range "$SERVICE_CIDR" \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --profiling=false --v=1
start kube-scheduler "$KIT_BIN/kube-scheduler" --kubeconfig "$PKI/scheduler.kubeconfig" \
  --authentication-kubeconfig "$PKI/scheduler.kubeconfig" --authorization-kubeconfig "$PKI/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --profiling=false --v=1
wait_until kube-controller-manager 60 "kube-controller-manager /healthz on 127.0.0.1:10257" \
  curl -fsSk https://127.0.0.1:10257/healthz
wait_until kube-scheduler 60 "kube-scheduler /healthz on 127.0.0.1:10259" curl -fsSk https://127.0.0.1:10259/healthz

# --- containerd: a private instance
CD=$CLUSTER_DIR/containerd
mkdir -p "$CD/certs.d/$REGISTRY_HOST" "$CLUSTER_DIR/cni/net.d"
write_if_changed "$CD/certs.d/$REGISTRY_HOST/hosts.toml" <<TOML
# The local registry speaks plain HTTP on loopback.
server = "http://$REGISTRY_HOST"
[host."http://$REGISTRY_HOST"]
  capabilities = ["pull", "resolve"]
TOML
write_if_changed "$CD/config.toml" <<TOML
version = 2
root = "$CD/root"
state = "$CD/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$CD/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$REGISTRY_HOST/kit/pause:$PAUSE_TAG"
  # No process here has CAP_SYS_RESOURCE: without this a pod sandbox cannot start.
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
        Root = "$CD/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CLUSTER_DIR/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$CD/certs.d"
TOML
start containerd containerd --config "$CD/config.toml"
wait_until containerd 60 "containerd on $CONTAINERD_SOCK" ctr --address "$CONTAINERD_SOCK" version

# --- CNI: the bridge plugin on our bridge, host-local IPAM with its state in our directory
write_if_changed "$CLUSTER_DIR/cni/net.d/10-kit.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "kit",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isDefaultGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "${NODE_IP%.*}.10", "gateway": "$NODE_IP"}]],
        "dataDir": "$CLUSTER_DIR/cni/ipam"
      }
    }
  ]
}
JSON

bash "$here/images.sh" pause coredns

# --- kubelet
KL=$CLUSTER_DIR/kubelet
mkdir -p "$KL" "$CLUSTER_DIR/pod-logs"
write_if_changed "$CLUSTER_DIR/kubelet-config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
cgroupDriver: cgroupfs
failCgroupV1: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
clusterDNS: [$DNS_SERVICE_IP]
clusterDomain: cluster.local
resolvConf: ""
podLogsDir: $CLUSTER_DIR/pod-logs
serializeImagePulls: false
failSwapOn: false
maxPods: 60
evictionHard:
  memory.available: 100Mi
  nodefs.available: 2%
  imagefs.available: 2%
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
YAML
start kubelet "$KIT_BIN/kubelet" --config "$CLUSTER_DIR/kubelet-config.yaml" \
  --kubeconfig "$PKI/kubelet.kubeconfig" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
  --root-dir "$KL" --cert-dir "$KL/pki" --v=1
wait_until kubelet 90 "the kubelet's /healthz on 127.0.0.1:10248" curl -fsS http://127.0.0.1:10248/healthz
wait_until kubelet 60 "node $NODE_NAME registered" kc get node "$NODE_NAME"
wait_until kubelet 90 "node $NODE_NAME Ready" kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s

# --- kube-proxy (iptables); leaves conntrack sysctls and route_localnet alone
write_if_changed "$CLUSTER_DIR/kube-proxy-config.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: $PKI/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
YAML
start kube-proxy "$KIT_BIN/kube-proxy" --config "$CLUSTER_DIR/kube-proxy-config.yaml" --v=1
wait_until kube-proxy 60 "kube-proxy /healthz on 127.0.0.1:10256" curl -fsS http://127.0.0.1:10256/healthz

# --- CoreDNS (the chart's helm test pod finds the Service by name)
sed -e "s#@IMAGE@#$REGISTRY_HOST/kit/coredns:$COREDNS_VERSION#" -e "s#@DNS_IP@#$DNS_SERVICE_IP#" \
  "$here/manifests/coredns.yaml" | kc apply -f - >/dev/null || die kube-apiserver "applying CoreDNS"
wait_until kubelet 120 "CoreDNS rollout in kube-system" \
  kc -n kube-system rollout status deployment/coredns --timeout=5s

log "cluster up in $((SECONDS - t0))s: kubectl --kubeconfig $KUBECONFIG_OUT get nodes"
kc get nodes >&2
echo "$KUBECONFIG_OUT"
