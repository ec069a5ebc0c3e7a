#!/usr/bin/env bash
# Create .venv with the locked dependencies. Wheels are built once into a machine-wide cache keyed by the lock
# file's hash, then installed with --no-index: a repeat run on the same machine fetches nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${TENDERHUB_CACHE_DIR:-$HOME/.cache/tenderhub}"
lock_hash=$(sha256sum requirements.lock | cut -c1-16)
wheels="$cache/wheels/$lock_hash"
stamp="$wheels/.complete"

py=""
for cand in python3.11 python3; do
  if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    py=$(command -v "$cand"); break
  fi
done
if [ -z "$py" ]; then
  echo "tenderhub needs Python 3.11 (python3.11 or python3 of that version); none found on PATH" >&2
  exit 2
fi

if [ -f .venv/.lock-hash ] && [ "$(cat .venv/.lock-hash)" = "$lock_hash" ] && [ -x .venv/bin/tenderhub ]; then
  exit 0
fi

if [ ! -f "$stamp" ]; then
  echo "venv: building wheels for requirements.lock into $wheels (first run on this machine)"
  mkdir -p "$wheels"
  "$py" -m pip wheel --quiet --disable-pip-version-check -w "$wheels" -r requirements.lock setuptools wheel
  touch "$stamp"
fi

echo "venv: installing locked dependencies into .venv (offline, from $wheels)"
rm -rf .venv
"$py" -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check --no-index --find-links "$wheels" \
  -r requirements.lock setuptools wheel
.venv/bin/pip install --quiet --disable-pip-version-check --no-index --no-deps --no-build-isolation -e .
echo "$lock_hash" > .venv/.lock-hash
