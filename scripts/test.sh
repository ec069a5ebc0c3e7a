#!/usr/bin/env bash
# The test command (README, `make test`, .ci/run): start the real stack (installing what is missing), migrate,
# then lint, type-check and run every test. A stack this script started is stopped again on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
start=$(date +%s)

if ! command -v docker-compose >/dev/null; then
  # The compose test validates docker-compose.yml with a real compose parser (no engine needed).
  echo "test: installing Debian's docker-compose (compose file validation)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-compose >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-compose >/dev/null; }
fi

if [ ! -x /usr/bin/chromium ]; then
  # The dashboard test drives Debian's Chromium headless.
  echo "test: installing Debian's chromium (browser test of the dashboard)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null; }
fi

started_here=0
if ! tenderhub stack status >/dev/null 2>&1; then
  started_here=1
fi
cleanup() {
  if [ "$started_here" = 1 ]; then tenderhub stack down; fi
}
trap cleanup EXIT

tenderhub stack up
tenderhub migrate

echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy"
mypy
echo "== pytest"
pytest "$@"
echo "test: finished in $(( $(date +%s) - start )) s"
