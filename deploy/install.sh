#!/usr/bin/env bash
# The one install path: `make` and the Dockerfile both run this, so CI exercises it.
#   deploy/install.sh            runtime into $VENV (default .venv), editable
#   deploy/install.sh --dev      plus test and lint tools
#   deploy/install.sh --cuda     build llama-cpp-python with CUDA (GPU boxes, the Docker image)
#   deploy/install.sh --system   install into the current interpreter, not editable (containers)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
extras=""
cuda=0
system=0
for arg in "$@"; do
  case "$arg" in
    --dev) extras="[dev]" ;;
    --cuda) cuda=1 ;;
    --system) system=1 ;;
    *) echo "install.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

if [ "$system" = 1 ]; then
  PIP=(python3 -m pip)
  target="."
else
  if [ ! -x "$VENV/bin/python" ]; then
    echo ">> creating $VENV"
    python3 -m venv "$VENV"
  fi
  PIP=("$VENV/bin/python" -m pip)
  target="-e ."
fi

if [ "$cuda" = 1 ]; then
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_CUDA=on}"
  export FORCE_CMAKE=1
fi

echo ">> installing Hearth${extras} (llama-cpp-python compiles on first install: 6-10 minutes on 2 cores; pip caches the wheel)"
"${PIP[@]}" install --quiet --upgrade pip wheel
# shellcheck disable=SC2086
"${PIP[@]}" install --progress-bar off $target"${extras}"
echo ">> done"
