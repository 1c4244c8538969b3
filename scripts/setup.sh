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
# Not needed to run tingxie (`pip install .` is enough: the VAD model comes with faster-whisper).
# The tests also run Silero's own ONNX file (the cut encoder, vad/silero_graph.py); silero-vad's
# metadata asks for torch, which they never import, so --no-deps keeps torch out.
if [[ " ${extras[*]:-} " == *" dev "* ]]; then pip install --no-deps "silero-vad==6.2.3"; fi
# --diarize reads the speaker encoder the resemblyzer wheel ships (pretrained.pt, Apache-2.0) and
# runs it in NumPy; the package's own metadata asks for torch, librosa and webrtcvad, which
# tingxie never imports, so --no-deps keeps them out (tingxie.diarize.weights).
pip install --no-deps "resemblyzer==0.1.4"
echo "$wanted" >> "$stamp"
