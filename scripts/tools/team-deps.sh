#!/usr/bin/env bash
# Real dependencies of the team-extension test app (tests/teamapp): Debian's redis-server,
# started by the tests on loopback as the lifespan resource a team's service would open.
# In CI a missing tool is a failure; elsewhere without root it only says how to install it.
set -euo pipefail
command -v redis-server >/dev/null && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "team-deps: missing redis-server; run as root or: sudo apt-get install -y redis-server" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 0
fi
# policy-rc.d keeps the package's service from starting: the tests start their own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
echo "team-deps: installing redis-server" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
command -v redis-server >/dev/null || { echo "team-deps: redis-server still missing" >&2; exit 1; }
