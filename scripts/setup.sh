#!/usr/bin/env bash
# Set up a virtual environment in .venv with tingxie and what it needs; idempotent.
#   scripts/setup.sh                  the default install (no torch)
#   scripts/setup.sh --dev            plus what the tests need
#   scripts/setup.sh --funasr         plus torch (CPU) and FunASR, for Paraformer models
#   scripts/setup.sh --ray            plus Ray, for tingxie transcribe --ray-workers
#   scripts/setup.sh --dev --funasr --ray   all three (what scripts/test.sh installs)
# A second run with the same options and an unchanged pyproject.toml does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extras=()
for arg in "$@"; do
    case "$arg" in
        --dev) extras+=(dev) ;;
        --funasr) extras+=(funasr) ;;
        --ray) extras+=(ray) ;;
        *) echo "usage: scripts/setup.sh [--dev] [--funasr] [--ray]" >&2; exit 2 ;;
    esac
done
spec="."
if [ ${#extras[@]} -gt 0 ]; then spec=".[$(IFS=,; echo "${extras[*]}")]"; fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=".venv/.tingxie-setup"
wanted="$spec $(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && grep -qxF "$wanted" "$stamp" && .venv/bin/python -c "import tingxie" 2>/dev/null; then
    exit 0  # installed with these options from this pyproject.toml already
fi
pip() { .venv/bin/python -m pip --quiet --disable-pip-version-check "$@"; }
pip install --upgrade pip
# The funasr extra pins torch==2.13.0, which resolves to the CPU build here; FunASR's fbank runs
# on kaldi-native-fbank, so torchaudio (which would pull another torch) is never installed.
pip install -e "$spec"
# silero-vad's metadata asks for torch, which tingxie never imports: it only reads the ONNX
# model the package ships. --no-deps keeps a multi-GB torch out of the default install.
pip install --no-deps "silero-vad==6.2.3"
echo "$wanted" >> "$stamp"
