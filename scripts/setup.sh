#!/usr/bin/env bash
# Set up a virtual environment in .venv with tingxie and what it needs; idempotent.
#   scripts/setup.sh          the default install (no torch)
#   scripts/setup.sh --dev    plus what the tests need
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}"
# silero-vad's metadata asks for torch, which tingxie never imports: it only reads the ONNX
# model the package ships. --no-deps keeps a multi-GB torch out of the default install.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps "silero-vad==6.2.3"
