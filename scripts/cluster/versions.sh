# Pinned versions of the local cluster's components and where their binaries are cached.
# Sourced by the scripts in scripts/cluster/.
# shellcheck shell=bash
#
# Kubernetes 1.34: inside the chart's supported range, the newest minor whose kubelet still
# runs on cgroup v1 (these machines) without `failCgroupV1: false`, and 1.34's CRI works
# with Debian's containerd 1.6.
K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
COREDNS_VERSION=${COREDNS_VERSION:-v1.14.7}
METRICS_SERVER_VERSION=${METRICS_SERVER_VERSION:-v0.8.0}
# Prometheus with kubernetes_sd_configs (Debian's build leaves the Kubernetes discovery out):
# the module's v0.3MM.P is Prometheus 3.MM.P.
PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-v0.309.1}
# crictl: the CRI client down.sh uses to stop and remove every pod sandbox (CNI teardown).
CRICTL_VERSION=${CRICTL_VERSION:-v1.34.0}
# The sandbox image (scripts/cluster/pause) as pushed to the local registry.
PAUSE_TAG=${PAUSE_TAG:-3.10-kit1}
KIT_CACHE=${KIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fastapi-kit}
KIT_BIN=$KIT_CACHE/bin/k8s-$K8S_VERSION
export K8S_VERSION ETCD_VERSION COREDNS_VERSION METRICS_SERVER_VERSION CRICTL_VERSION PROMETHEUS_VERSION PAUSE_TAG KIT_CACHE KIT_BIN
