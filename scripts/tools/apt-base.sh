#!/usr/bin/env bash
# Debian tools the tests and benchmarks drive for real: prometheus/promtool, wrk, haproxy.
# In CI a missing tool is a failure, so this installs them; elsewhere without root it
# only says what is missing.
set -euo pipefail
need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v wrk >/dev/null || need+=(wrk)
command -v haproxy >/dev/null || need+=(haproxy)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "apt-base: missing ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 0
fi
# policy-rc.d keeps the packages' services from starting: the tests start their own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
