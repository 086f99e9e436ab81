#!/usr/bin/env bash
# Install checkov into a virtual environment of its own (.tools/checkov): it pins
# old versions of common packages that must not leak into the project venv.
# Idempotent: skips the work when the pinned version is already installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${TOOLS_DIR:-$ROOT/.tools}"
CHECKOV_VERSION="3.3.30"
VENV="$TOOLS/checkov"

log() { printf 'chart-tools.sh: %s\n' "$*" >&2; }

have="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("checkov"))' 2>/dev/null || true)"
if [ "$have" = "$CHECKOV_VERSION" ] && [ -x "$VENV/bin/checkov" ]; then
  log "checkov $CHECKOV_VERSION already installed"
  exit 0
fi

log "installing checkov $CHECKOV_VERSION into $VENV (had: ${have:-none})"
mkdir -p "$TOOLS/bin"
uv=""
if [ -x "$TOOLS/bin/uv" ]; then uv="$TOOLS/bin/uv"; elif command -v uv >/dev/null 2>&1; then uv="$(command -v uv)"; fi

if [ -n "$uv" ]; then
  # checkov supports Python 3.9-3.12; use the interpreter that runs this machine
  "$uv" venv --quiet --allow-existing --python "$(command -v python3)" "$VENV"
  "$uv" pip install --quiet --python "$VENV/bin/python" "checkov==$CHECKOV_VERSION"
else
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi
ln -sf "../checkov/bin/checkov" "$TOOLS/bin/checkov"
"$VENV/bin/checkov" --version >/dev/null
log "checkov $("$VENV/bin/checkov" --version) -> $VENV"
