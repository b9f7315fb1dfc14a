#!/usr/bin/env bash
# Set up .venv from nothing: `bash setup.sh` for the app, `bash setup.sh --dev` for the tests too.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: anything that lets pip choose pulls a CUDA build of several GB
.venv/bin/python -m pip install -q torch==2.13.0
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install -q -r requirements-dev.txt
  if ! command -v chromium >/dev/null 2>&1; then  # the browser tests drive Debian's chromium
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "note: install Debian's chromium (apt-get install chromium) for the browser tests" >&2
    fi
  fi
else
  .venv/bin/python -m pip install -q -r requirements.txt
fi
