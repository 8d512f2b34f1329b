#!/usr/bin/env bash
# Set up the environment if needed and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export BLOODCLI_CACHE_DIR="${BLOODCLI_CACHE_DIR:-$(mktemp -d)}"
exec .venv/bin/python -m pytest "$@"
