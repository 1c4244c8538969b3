"""A plain `pip install` of this checkout into a fresh virtual environment is a working tool:
no setup script, no extras, no model download (pip may take wheels from its own cache)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JFK = ROOT / "tests" / "data" / "jfk.flac"


@pytest.mark.slow
def test_pip_install_alone_transcribes_with_the_embedded_default_model(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet", str(ROOT)],
                         capture_output=True, text=True, timeout=1500)
    assert pip.returncode == 0, pip.stderr[-3000:]
    # No torch and no silero-vad package: the VAD model is faster-whisper's file.
    absent = subprocess.run([str(python), "-c", "import importlib.util as u; "
                             "print(u.find_spec('torch') is None, u.find_spec('silero_vad') is None)"],
                            capture_output=True, text=True, check=True)
    assert absent.stdout.split() == ["True", "True"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TINGXIE_OFFLINE": "1", "TINGXIE_CACHE_DIR": str(tmp_path / "cache"),
           "HF_HOME": str(tmp_path / "hf")}
    env.pop("PYTHONPATH", None)
    out = tmp_path / "out"
    # --batch-size-s: fixed batches, so the run does not first measure the model's memory (minutes on a busy machine)
    run = subprocess.run([str(venv / "bin" / "tingxie"), "transcribe", str(JFK), "-f", "txt", "-q", "--batch-size-s", "30",
                          "-o", str(out)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    text = (out / "jfk.txt").read_text().lower()
    for words in ("my fellow americans", "ask not what your country can do for you", "what you can do for your country"):
        assert words in text.replace(",", "")
