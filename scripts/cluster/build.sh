#!/usr/bin/env bash
# Build the Kubernetes server binaries (and etcd, CoreDNS, metrics-server, crictl, the
# sandbox's pause process) from their Go modules, once per machine and version, into a cache outside the repo.
#
# Why from Go modules: no registry here serves Kubernetes server binaries, but the Go module
# proxy serves k8s.io/kubernetes. `go install k8s.io/kubernetes/cmd/kubelet@vX` fails because
# the module requires its staging modules at v0.0.0 through replace directives, so a small
# wrapper module requires k8s.io/kubernetes and replaces every k8s.io staging module with the
# matching v0.Y.Z tag.
#
# Idempotent: a component whose binary is already in the cache is not rebuilt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/cluster/versions.sh
source "$here/versions.sh"

export GOFLAGS="${GOFLAGS:--mod=mod}"
export CGO_ENABLED=0
mkdir -p "$KIT_BIN" "$KIT_CACHE/src"

log() { printf '[cluster-build] %s\n' "$*" >&2; }

k8s_components=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

build_kubernetes() {
  local missing=() c
  for c in "${k8s_components[@]}"; do [ -x "$KIT_BIN/$c" ] || missing+=("$c"); done
  [ ${#missing[@]} -eq 0 ] && { log "kubernetes $K8S_VERSION: cached in $KIT_BIN"; return; }
  local src="$KIT_CACHE/src/kubernetes-$K8S_VERSION"
  mkdir -p "$src"
  (
    cd "$src"
    if [ ! -f go.mod ]; then
      log "kubernetes $K8S_VERSION: preparing wrapper module in $src"
      go mod init kitbuild/kubernetes >/dev/null 2>&1
      go mod edit -require "k8s.io/kubernetes@$K8S_VERSION"
      local gomod
      gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
      local minor="v0.${K8S_VERSION#v1.}"
      local m
      sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod" | while read -r m; do
        go mod edit -replace "$m=$m@$minor"
      done
      printf 'package main\n\nimport (\n' > tools.go
      printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl >> tools.go
      printf ')\n\nfunc main() {}\n' >> tools.go
      go mod tidy >/dev/null 2>&1 || go mod tidy
    fi
    local ver="$K8S_VERSION" minor_num="${K8S_VERSION#v1.}"
    minor_num="${minor_num%%.*}"
    local pkgs
    local ldflags="-s -w"
    for pkgs in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkgs.gitVersion=$ver -X $pkgs.gitMajor=1 -X $pkgs.gitMinor=$minor_num"
      ldflags+=" -X $pkgs.gitTreeState=clean -X $pkgs.buildDate=1970-01-01T00:00:00Z"
    done
    for c in "${missing[@]}"; do
      log "kubernetes $K8S_VERSION: building $c"
      go build -trimpath -ldflags "$ldflags" -o "$KIT_BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c"
      mv "$KIT_BIN/$c.tmp" "$KIT_BIN/$c"
    done
  )
}

# build_module NAME MODULE@VERSION PACKAGE: a plain go build in a wrapper module. The
# binary's version is stamped beside it (NAME.version): a new pin rebuilds it.
build_module() {
  local name=$1 modver=$2 pkg=$3 stamp="$KIT_BIN/$1.version"
  if [ -x "$KIT_BIN/$name" ]; then
    [ -f "$stamp" ] || echo "$modver" >"$stamp"
    if [ "$(cat "$stamp")" = "$modver" ]; then log "$name ${modver##*@}: cached"; return; fi
  fi
  local src="$KIT_CACHE/src/$name-${modver##*@}"
  mkdir -p "$src"
  (
    cd "$src"
    if [ ! -f go.mod ]; then
      go mod init "kitbuild/$name" >/dev/null 2>&1
      go mod edit -require "$modver"
      printf 'package main\n\nimport _ "%s"\n\nfunc main() {}\n' "$pkg" > tools.go
      go mod tidy >/dev/null 2>&1 || go mod tidy
    fi
    log "$name ${modver##*@}: building"
    go build -trimpath -ldflags "-s -w" -o "$KIT_BIN/$name.tmp" "$pkg"
    mv "$KIT_BIN/$name.tmp" "$KIT_BIN/$name"
    echo "$modver" >"$stamp"
  )
}

# build_plugins_only NAME MODULE@VERSION PACKAGE_DIR FILE FUNCTION: build PACKAGE_DIR of a
# copy of the module (its own go.mod and go.sum) in which FILE, the generated file that
# registers every plugin, is replaced by what FUNCTION prints: the plugins the cluster uses.
# Prometheus and CoreDNS each register theirs this way; leaving the cloud SDKs (AWS, Azure,
# GCE, ...) out of the build is most of their cold build time. The module cache is not
# edited (Go refuses overlays there); the stamp holds the plugin list, so a change rebuilds.
build_plugins_only() {
  local name=$1 modver=$2 pkgdir=$3 file=$4 fn=$5 stamp="$KIT_BIN/$1.version" key
  key="$modver plugins:$("$fn" | sha256sum | cut -c1-12)"
  if [ -x "$KIT_BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$key" ]; then
    log "$name ${modver##*@}: cached"
    return
  fi
  local src="$KIT_CACHE/src/$name-${modver##*@}-plugins" dir
  dir=$(go mod download -json "$modver" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -d "$dir" ] || { log "$name: go mod download $modver failed"; return 1; }
  rm -rf "$src"
  cp -r "$dir" "$src"
  chmod -R u+w "$src"
  "$fn" >"$src/$file"
  log "$name ${modver##*@}: building (only the plugins the cluster uses)"
  (cd "$src" && go build -trimpath -ldflags "-s -w" -o "$KIT_BIN/$name.tmp" "./$pkgdir")
  mv "$KIT_BIN/$name.tmp" "$KIT_BIN/$name"
  echo "$key" >"$stamp"
}

# Prometheus registers every service discovery (AWS, Azure, GCE, ...) in plugins/plugins.go;
# the tests use kubernetes_sd_configs and static targets only.
prometheus_plugins() {
  printf 'package plugins\n\nimport _ "github.com/prometheus/prometheus/discovery/kubernetes"\n'
}

# CoreDNS registers every plugin (route53, azure, clouddns, etcd, ...) in core/plugin/zplugin.go;
# the cluster's Corefile (manifests/coredns.yaml) uses these.
coredns_plugins() {
  printf 'package plugin\n\nimport (\n'
  local p
  for p in errors health ready kubernetes cache loadbalance; do
    printf '\t_ "github.com/coredns/coredns/plugin/%s"\n' "$p"
  done
  printf ')\n'
}

# The sandbox's pause process (scripts/cluster/pause, no dependencies).
build_pause() {
  local stamp="$KIT_BIN/pause.version" sum
  sum=$(cat "$here/pause/main.go" "$here/pause/go.mod" | sha256sum | cut -c1-16)
  if [ -x "$KIT_BIN/pause" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then
    log "pause: cached"
    return
  fi
  log "pause: building"
  (cd "$here/pause" && GOFLAGS="" go build -trimpath -ldflags "-s -w" -o "$KIT_BIN/pause.tmp" .)
  mv "$KIT_BIN/pause.tmp" "$KIT_BIN/pause"
  echo "$sum" >"$stamp"
}

# cluster: what up.sh needs; all: that and metrics-server (the HPA tests)
want=${1:-all}
case "$want" in
  all|cluster|pause) build_pause ;;&
  all|cluster|crictl) build_module crictl "sigs.k8s.io/cri-tools@$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl ;;&
  all|cluster|etcd) build_module etcd "go.etcd.io/etcd/server/v3@$ETCD_VERSION" go.etcd.io/etcd/server/v3 ;;&
  all|cluster|kubernetes) build_kubernetes ;;&
  all|cluster|coredns) build_plugins_only coredns "github.com/coredns/coredns@$COREDNS_VERSION" . core/plugin/zplugin.go coredns_plugins ;;&
  all|metrics-server) build_module metrics-server "sigs.k8s.io/metrics-server@$METRICS_SERVER_VERSION" sigs.k8s.io/metrics-server/cmd/metrics-server ;;&
  all|prometheus) build_plugins_only prometheus "github.com/prometheus/prometheus@$PROMETHEUS_VERSION" cmd/prometheus plugins/plugins.go prometheus_plugins ;;&
  all|cluster|pause|crictl|etcd|kubernetes|coredns|metrics-server|prometheus) ;;
  *) echo "usage: $0 [all|cluster|pause|crictl|etcd|kubernetes|coredns|metrics-server|prometheus]" >&2; exit 2 ;;
esac
log "done: $(find "$KIT_BIN" -maxdepth 1 -type f ! -name '*.version' -printf '%f ' | sort)"
