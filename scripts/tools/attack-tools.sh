#!/usr/bin/env bash
# The real attack tool the hostile-client tests drive (issue 16): Debian's slowhttptest
# (slow headers -H, slow body -B, slow read -X, range -R).
# Idempotent. In CI a missing tool is a failure; elsewhere without root it only says how
# to install it.
set -euo pipefail
need=()
command -v slowhttptest >/dev/null 2>&1 || need+=(slowhttptest)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "attack-tools: missing ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 0
fi
echo "attack-tools: installing ${need[*]}" >&2
apt-get -o DPkg::Lock::Timeout=300 update -qq
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
command -v slowhttptest >/dev/null 2>&1 || { echo "attack-tools: slowhttptest still missing" >&2; exit 1; }
