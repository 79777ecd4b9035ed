#!/usr/bin/env bash
# Runs the whole suite. Services the tests need (PostgreSQL) are found or started by the fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# The whole suite (no arguments) starts with the static checks: ruff, and mypy strict on the packages.
if [ "$#" -eq 0 ]; then
  .venv/bin/ruff check core bot lsp connectors server tests bench
  .venv/bin/mypy
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "$@"
