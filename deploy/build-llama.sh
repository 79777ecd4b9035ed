#!/usr/bin/env bash
# Builds llama.cpp once, portably, from the tree vendored in the pinned llama-cpp-python sdist:
# the shared libraries the Python binding loads *and* the llama-server binary Hearth supervises,
# so both always come from the same source and the same flags.
#
#   deploy/build-llama.sh [--cuda] DEST
#   deploy/build-llama.sh [--cuda] --print-key     the cache key these flags give
#
# DEST receives llama-server, libllama.so, libggml*.so and libmtmd.so (RPATH $ORIGIN), plus
# BUILD_INFO (version, flags, cache key). The build is cached under
# ${HEARTH_BUILD_CACHE:-~/.cache/hearth}/llama.cpp/<version>-<hash of flags and compiler>, so a
# second install is a copy and a change of flags is a new build (never a stale native one).
#
# Portable by default: never GGML_NATIVE, never the AMX kernels (they segfault on Sapphire
# Rapids-class Xeons, llama.cpp issue 20824). x86-64 baseline: AVX2 + FMA + F16C + BMI2 (every x86
# server CPU since 2015: Intel Haswell/Broadwell, AMD Zen), no AVX-512. Extra flags for a known CPU
# (an opt-in, never the default): HEARTH_LLAMA_CMAKE_ARGS="-DGGML_AVX512=ON".
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="${HEARTH_LLAMA_VERSION:-0.3.36}"
cuda=0
dest=""
print_key=0
for arg in "$@"; do
  case "$arg" in
    --cuda) cuda=1 ;;
    --print-key) print_key=1 ;;
    -*) echo "build-llama.sh: unknown option $arg" >&2; exit 2 ;;
    *) dest="$arg" ;;
  esac
done
[ -n "$dest" ] || [ "$print_key" = 1 ] || { echo "usage: deploy/build-llama.sh [--cuda] [--print-key] DEST" >&2; exit 2; }

flags=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=ON
  -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
  -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=OFF -DGGML_CPU_ALL_VARIANTS=OFF
)
case "$(uname -m)" in
  x86_64|amd64)
    flags+=(
      -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
      -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF
      -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
    ) ;;
esac
if [ "$cuda" = 1 ]; then
  flags+=(-DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES:-80;86;89;90}")
fi
# shellcheck disable=SC2206
extra=(${HEARTH_LLAMA_CMAKE_ARGS:-})
flags+=("${extra[@]}")
mode=portable
case " ${flags[*]} " in
  *" -DGGML_NATIVE=ON "*)
    mode="native (opted in)"
    echo "build-llama.sh: warning: a native build runs only on CPUs like this one" >&2
    # -march=native would switch ggml's AMX kernels on by itself on an AMX CPU: keep them off.
    case "$(uname -m)" in
      x86_64|amd64)
        flags+=("-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
                "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16") ;;
    esac ;;
esac

compiler="$( (c++ --version 2>/dev/null || echo none) | head -n1)"
key_src="$VERSION $(uname -m) ${flags[*]} $compiler"
key="$VERSION-$(printf '%s' "$key_src" | sha256sum | cut -c1-16)"
if [ "$print_key" = 1 ]; then echo "$key"; exit 0; fi
root="${HEARTH_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth}"
cache="$root/llama.cpp/$key"

if [ ! -f "$cache/.complete" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$root/sdist"
  sdist="$root/sdist/llama_cpp_python-$VERSION.tar.gz"
  if [ -n "${HEARTH_LLAMA_SDIST:-}" ]; then
    cp "$HEARTH_LLAMA_SDIST" "$sdist"
  elif [ ! -f "$sdist" ]; then
    echo ">> llama.cpp $VERSION: downloading the llama-cpp-python sdist (it vendors llama.cpp)"
    "${PYTHON:-python3}" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$work"
    mv "$work/llama_cpp_python-$VERSION.tar.gz" "$sdist"
  fi
  cp "$sdist" "$work/"
  tar -xzf "$work"/llama_cpp_python-"$VERSION".tar.gz -C "$work"
  src="$work/llama_cpp_python-$VERSION/vendor/llama.cpp"
  jobs="${HEARTH_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"
  echo ">> llama.cpp $VERSION: compiling llama-server and the shared libraries ($mode; about 10 minutes on 2 cores, cached as $key)"
  cmake -S "$src" -B "$work/build" -Wno-dev "${flags[@]}" >"$work/configure.log" 2>&1 \
    || { tail -n 40 "$work/configure.log" >&2; exit 1; }
  cmake --build "$work/build" -j"$jobs" --target llama-server llama ggml mtmd >"$work/build.log" 2>&1 \
    || { tail -n 60 "$work/build.log" >&2; exit 1; }
  rm -rf "$cache.tmp" && mkdir -p "$cache.tmp"
  cp -a "$work/build/bin/llama-server" "$cache.tmp/"
  cp -a "$work/build/bin/"lib*.so* "$cache.tmp/"
  if grep -l ggml_backend_amx "$cache.tmp"/libggml-cpu.so* >/dev/null 2>&1; then
    echo "build-llama.sh: the built libggml-cpu contains AMX kernels (they crash on Sapphire Rapids-class Xeons); refusing to install it" >&2
    exit 1
  fi
  {
    echo "version=$VERSION"
    echo "key=$key"
    echo "arch=$(uname -m)"
    echo "compiler=$compiler"
    echo "flags=${flags[*]}"
    echo "opt_in=${HEARTH_LLAMA_CMAKE_ARGS:-}"
  } >"$cache.tmp/BUILD_INFO"
  touch "$cache.tmp/.complete"
  rm -rf "$cache" && mv "$cache.tmp" "$cache"
else
  echo ">> llama.cpp $VERSION: using the cached build $key"
fi

mkdir -p "$dest"
rm -f "$dest"/lib*.so* "$dest/llama-server"
cp -a "$cache"/. "$dest"/
rm -f "$dest/.complete"
echo ">> llama.cpp $VERSION installed in $dest"
