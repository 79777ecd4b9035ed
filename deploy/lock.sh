#!/usr/bin/env bash
# Refreshes the locks deploy/install.sh installs from, so every install is the same install:
#   deploy/requirements.lock       the runtime dependencies (make demo, the Docker image)
#   deploy/requirements-dev.lock   plus the test and lint tools (make test, CI)
# Every package is pinned with its hashes (pip installs with --require-hashes). Two are left out on
# purpose and installed by install.sh itself: llama-cpp-python (built against Hearth's own portable
# llama.cpp, never pip's native build) and torch (only for the hearth[torch] extra; its CPU wheel is
# machine-specific). `make lock` runs this, then the whole suite against the new locks.
#
#   deploy/lock.sh          newest releases pyproject.toml and deploy/lock-constraints.txt allow
#   deploy/lock.sh --keep   keep every pin that still fits, change only what a new constraint forbids
set -euo pipefail
cd "$(dirname "$0")/.."

PIP_TOOLS_VERSION="7.6.2"
upgrade=(--upgrade)
case "${1:-}" in
  --keep) upgrade=() ;;
  "") ;;
  *) echo "usage: deploy/lock.sh [--keep]" >&2; exit 2 ;;
esac
cache="${HEARTH_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth}"
tools="$cache/pip-tools-$PIP_TOOLS_VERSION"
if [ ! -x "$tools/bin/pip-compile" ]; then
  echo ">> lock: installing pip-tools $PIP_TOOLS_VERSION into $tools"
  rm -rf "$tools"
  "${PYTHON3:-python3}" -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet "pip-tools==$PIP_TOOLS_VERSION"
fi

# torch is never locked, but its dependencies are (the dev extra needs it): resolve them for its CPU
# build where the machine has one (PyPI's default build pulls gigabytes of CUDA libraries).
torch_pin="$(sed -n 's/.*"\(torch==[0-9.]*\)".*/\1/p' pyproject.toml)"
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
if "$tools/bin/python" -m pip download --quiet --no-deps -d "$(mktemp -d)" "$torch_pin+cpu" >/dev/null 2>&1; then
  echo "$torch_pin+cpu" > "$constraints"
  echo ">> lock: resolving torch's dependencies for $torch_pin+cpu"
fi

python_floor="$(sed -n 's/^requires-python = ">=\([0-9.]*\)"/\1/p' pyproject.toml)"

compile() {  # compile OUTPUT [--extra NAME]
  local out="$1"; shift
  echo ">> lock: resolving $out (minutes: every candidate file is hashed)"
  # pip-compile starts from the pins already in its output file (what --keep keeps).
  cp "$out" "$out.tmp"
  "$tools/bin/pip-compile" --quiet ${upgrade[@]+"${upgrade[@]}"} --generate-hashes --strip-extras \
    --unsafe-package torch --unsafe-package llama-cpp-python \
    --no-emit-index-url --no-emit-find-links \
    --constraint deploy/lock-constraints.txt --constraint "$constraints" \
    -o "$out.tmp" "$@" pyproject.toml
  # The dev extra names hearth[torch], so pip-compile lists the project itself: install.sh adds it.
  python3 deploy/lockfile.py "$out.tmp"
  # Every locked release must install on the oldest Python pyproject.toml admits.
  "$tools/bin/python" deploy/lockfile.py --python "$python_floor" "$out.tmp"
  mv "$out.tmp" "$out"
}

compile deploy/requirements.lock
compile deploy/requirements-dev.lock --extra dev
echo ">> lock: done ($(grep -c '^[a-z]' deploy/requirements.lock) runtime and $(grep -c '^[a-z]' deploy/requirements-dev.lock) dev packages)"
