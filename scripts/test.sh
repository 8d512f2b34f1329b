#!/usr/bin/env bash
# Set up the environment if needed and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The report test renders HTML in headless Chromium; install it where we can, never fail the run over it.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || echo "chromium not installed; browser test will be skipped" >&2
fi
export BLOODCLI_CACHE_DIR="${BLOODCLI_CACHE_DIR:-$(mktemp -d)}"
exec .venv/bin/python -m pytest "$@"
