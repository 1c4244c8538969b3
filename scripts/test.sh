#!/usr/bin/env bash
# Set up (with the test extras and FunASR, for the Paraformer tests) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev --funasr
exec .venv/bin/python -m pytest -q "$@"
