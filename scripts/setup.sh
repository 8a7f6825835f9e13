#!/usr/bin/env bash
# Idempotent set-up of .venv with everything the demo and the tests need (CPU is enough).
# Re-running is cheap: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# Headless Chromium: the browser tests (the HTML evaluation report; the app, driven by Playwright).
# Playwright drives this Debian build through its executable path: no Playwright browser download.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian chromium for the browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: chromium not found and cannot be installed here; browser tests will be skipped"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch 2.14.1 + torchvision 0.29.1: the pair whose wheels install on a CPU-only machine with a
# working torchvision (transformers' Qwen2.5-VL processor needs it).
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[all,dev]"
