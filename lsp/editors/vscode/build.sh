#!/usr/bin/env bash
# Builds the installable VS Code extension; `make vscode` runs this.
#   lsp/editors/vscode/build.sh [OUT]    -> OUT/hearth-vscode-<version>.vsix (OUT defaults to build/vscode)
# The extension's one runtime dependency (vscode-languageclient, pinned by package-lock.json) is
# installed into a staging copy, so the .vsix carries it and this folder stays clean. @vscode/vsce
# comes from the npm registry into OUT/tools, pinned here.
# Exit status 3: Node.js/npm could not be installed or the npm registry cannot be reached (the
# test of this build skips on it and only on it).
set -euo pipefail
VSCE_VERSION=3.9.1   # needs Node.js 20 or newer
NODE_MAJOR_MIN=20
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out="${1:-$root/build/vscode}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo ">> no npm on PATH: installing nodejs and npm with apt-get"
    apt-get install -y -q nodejs npm >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q nodejs npm >/dev/null 2>&1; } \
      || { echo "build.sh: npm is missing and 'apt-get install nodejs npm' failed (no network to the package mirror?); install Node.js $NODE_MAJOR_MIN+ and npm, then run 'make vscode' again." >&2; exit 3; }
  else
    echo "build.sh: building the VS Code extension needs Node.js $NODE_MAJOR_MIN+ and npm (Debian/Ubuntu: sudo apt-get install nodejs npm; elsewhere https://nodejs.org)." >&2
    exit 1
  fi
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt "$NODE_MAJOR_MIN" ]; then
  echo "build.sh: @vscode/vsce $VSCE_VERSION needs Node.js $NODE_MAJOR_MIN or newer, this is $(node --version) (https://nodejs.org, or NodeSource's packages for Debian/Ubuntu)." >&2
  exit 1
fi

registry_failed() {
  if ! npm view "@vscode/vsce@$VSCE_VERSION" version >/dev/null 2>&1; then
    echo "build.sh: cannot reach the npm registry ($(npm config get registry)); 'make vscode' needs it once for @vscode/vsce and vscode-languageclient." >&2
    exit 3
  fi
  exit 1
}

tools="$out/tools"
vsce="$tools/node_modules/.bin/vsce"
if [ ! -x "$vsce" ] || [ "$("$vsce" --version 2>/dev/null)" != "$VSCE_VERSION" ]; then
  echo ">> @vscode/vsce $VSCE_VERSION into $tools"
  rm -rf "$tools" && mkdir -p "$tools"
  npm install --prefix "$tools" --no-audit --no-fund --loglevel=error "@vscode/vsce@$VSCE_VERSION" || registry_failed
fi

stage="$out/stage"
rm -rf "$stage" && mkdir -p "$stage"
cp "$here/package.json" "$here/package-lock.json" "$here/.vscodeignore" "$here/extension.js" "$here/README.md" "$stage/"
cp "$root/LICENSE" "$stage/LICENSE"
echo ">> runtime dependencies (package-lock.json) into the staging copy"
(cd "$stage" && npm ci --omit=dev --no-audit --no-fund --loglevel=error) || registry_failed

version="$(node -p "require('$stage/package.json').version")"
vsix="$out/hearth-vscode-$version.vsix"
rm -f "$vsix"
(cd "$stage" && "$vsce" package --out "$vsix")
echo ">> $vsix"
echo "   install: code --install-extension $vsix"
