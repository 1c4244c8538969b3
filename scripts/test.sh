#!/usr/bin/env bash
# Set up (with the test extras, FunASR for the Paraformer tests, Ray for the scale-out tests, and
# Chromium for the web page tests) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev --funasr --ray
bash scripts/install-browser.sh  # Debian chromium: the browser tests run, never skip
exec .venv/bin/python -m pytest -q "$@"
