#!/usr/bin/env bash
# Build the local cluster's binaries (Kubernetes, etcd, CoreDNS, metrics-server, Prometheus,
# crictl, pause) before the test run, once per machine into ~/.cache/fastapi-kit
# (scripts/cluster/build.sh; cached, so a warm run spends seconds here). `make test` calls it
# before pytest: a cold build takes longer than any one test may (pytest-timeout), and
# here it prints its own progress. In CI a missing Go toolchain or root is a failure;
# elsewhere the cluster suite skips and this says how to enable it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
missing=""
[ "$(id -u)" = 0 ] || missing="root"
command -v go >/dev/null 2>&1 || missing="${missing:+$missing, }go"
if [ -n "$missing" ]; then
  echo "cluster-prebuild: needs $missing (the cluster suite: see README, 'The local cluster')" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 0
fi
start=$(date +%s)
bash "$here/build.sh" all
echo "cluster-prebuild: ready in $(( $(date +%s) - start )) s" >&2
