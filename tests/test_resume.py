"""A run killed with SIGKILL continues from its checkpoint; its output equals an uninterrupted run's."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from long_audio import english_pieces, joined, write_flac

pytestmark = pytest.mark.slow  # every test here runs a real model on minutes of audio

ARGS = ["-m", "whisper-tiny.en", "--max-batch-size", "1", "-q"]  # one segment a window: many windows


def cli(*args):
    return [sys.executable, "-m", "tingxie.cli.main", "transcribe", *args]


@pytest.fixture(scope="module")
def long_input(tmp_path_factory):
    return write_flac(tmp_path_factory.mktemp("resume") / "talk.flac", joined(english_pieces(), seed=1))


def _outputs(directory):
    files = {p.name: p.read_text() for p in directory.iterdir() if not p.name.startswith(".")}
    document = json.loads(files.pop("talk.json"))
    document.pop("stats")
    return files, document


def test_a_killed_run_resumes_and_matches_an_uninterrupted_one(long_input, tmp_path):
    full = tmp_path / "full"
    subprocess.run(cli(str(long_input), "-o", str(full), *ARGS), check=True, timeout=600)

    resumed = tmp_path / "resumed"
    checkpoint = resumed / ".talk.flac.tingxie-checkpoint.jsonl"
    process = subprocess.Popen(cli(str(long_input), "-o", str(resumed), *ARGS))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoint.exists() and len(checkpoint.read_text().splitlines()) >= 2:  # header + a window
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (resumed / "talk.json").exists() and not (resumed / "talk.srt").exists()
    assert (resumed / "talk.srt.partial").exists()  # progress a reader could follow
    recorded = sum(len(json.loads(line)["results"]) for line in checkpoint.read_text().splitlines()[1:])

    again = subprocess.run(cli(str(long_input), "-o", str(resumed), *ARGS[:-1]),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"resuming after {recorded} finished segments" in again.stderr
    assert _outputs(resumed) == _outputs(full)
    assert not checkpoint.exists() and not list(resumed.glob("*.partial"))


def test_restart_ignores_a_checkpoint(long_input, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    checkpoint = out / ".talk.flac.tingxie-checkpoint.jsonl"
    checkpoint.write_text('{"format": 1}\n{"window": 0, "results": []}\n')  # another run's, or garbage
    result = subprocess.run(cli(str(long_input), "-o", str(out), "--restart", *ARGS), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert "resuming" not in result.stderr and not checkpoint.exists()
    assert "fellow americans" in (out / "talk.txt").read_text().lower()


def test_stdin_is_transcribed(data_dir, tmp_path):
    with open(data_dir / "jfk.flac", "rb") as stdin:
        result = subprocess.run(cli("-", "-o", str(tmp_path), "-f", "txt", *ARGS), stdin=stdin,
                                capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "ask not what your country" in " ".join((tmp_path / "stdin.txt").read_text().lower().split())
