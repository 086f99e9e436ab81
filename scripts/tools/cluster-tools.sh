#!/usr/bin/env bash
# Debian tools the local single-node cluster (scripts/cluster/, `make cluster-up`) runs:
# containerd + runc (the kubelet's container runtime), the CNI plugins (bridge, host-local,
# loopback, portmap), iptables + conntrack (kube-proxy in iptables mode), docker-registry
# (the OCI registry on 127.0.0.1), buildah (the pause image and the app image), openssl
# (the cluster's certificates). Packages' own services are kept from starting: the cluster
# scripts start private instances with their own configs.
# Idempotent. In CI a missing tool is a failure; elsewhere without root it only says how
# to install it.
set -euo pipefail

# command (or file) -> Debian package
declare -A want=(
  [containerd]=containerd
  [runc]=runc
  [/usr/lib/cni/bridge]=containernetworking-plugins
  [iptables]=iptables
  [conntrack]=conntrack
  [docker-registry]=docker-registry
  [buildah]=buildah
  [openssl]=openssl
  [curl]=curl
)
have() { if [[ $1 == /* ]]; then [ -x "$1" ]; else command -v "$1" >/dev/null 2>&1; fi; }
need=()
for cmd in "${!want[@]}"; do
  have "$cmd" || need+=("${want[$cmd]}")
done
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "cluster-tools: missing ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 0
fi
# policy-rc.d keeps the packages' services (containerd, docker-registry) from starting.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
echo "cluster-tools: installing ${need[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
for cmd in "${!want[@]}"; do
  have "$cmd" || { echo "cluster-tools: $cmd still missing" >&2; exit 1; }
done
