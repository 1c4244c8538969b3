"""`tingxie transcribe --ray-workers N`: inputs spread over Ray actors (tingxie.cli.scaleout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tingxie.errors import OptionError
from tingxie.options import BatchOptions, ModelOptions, TranscribeOptions
from tingxie.cli.scaleout import worker_options

GiB = 2**30


def test_each_worker_gets_its_share_of_the_budget_and_the_cpus():
    default = worker_options(TranscribeOptions(), 2, cpus=8, available_bytes=10 * GiB)
    assert default.batch.memory_budget == f"{int(0.7 * 10 * GiB) // 2 // 2**20}MiB"
    assert default.model.threads == 4
    given = TranscribeOptions(model=ModelOptions(threads=3), batch=BatchOptions(memory_budget="6GiB"))
    three = worker_options(given, 3, cpus=2, available_bytes=10 * GiB)
    assert three.batch.memory_budget == "2048MiB" and three.model.threads == 3  # the user's threads, per worker
    assert worker_options(TranscribeOptions(), 4, cpus=2, available_bytes=GiB).model.threads == 1
    assert worker_options(TranscribeOptions(batch=BatchOptions(memory_budget="50%")), 2, cpus=2,
                          available_bytes=8 * GiB).batch.memory_budget == "2048MiB"
    with pytest.raises(OptionError):
        worker_options(TranscribeOptions(), 0, cpus=2, available_bytes=GiB)


def _cli(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "tingxie.cli.main", "transcribe", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env=env)


@pytest.mark.slow  # a real model end to end
def test_two_ray_workers_write_what_one_process_writes(data_dir, tmp_path):
    """Two files and a missing one over two Ray workers (whisper-tiny.en): each file's outputs
    equal the single-process command's, the missing file is one line on stderr, exit status 1
    as without Ray; the texts reach stdout."""
    inputs = [str(tmp_path / "jfk.flac"), str(tmp_path / "again.flac"), str(tmp_path / "missing.wav")]
    shutil.copy(data_dir / "jfk.flac", inputs[0])
    shutil.copy(data_dir / "jfk.flac", inputs[1])
    common = ["-m", "whisper-tiny.en", "-f", "txt,srt", "--threads", "1"]
    # Ray starts each one-CPU worker with OMP_NUM_THREADS=1, which moves CTranslate2's word times
    # by a frame (20 ms) on jfk: the process alone runs the same way, so the outputs can be equal.
    alone = _cli(*inputs, *common, "-o", str(tmp_path / "alone"), "-q", cwd=tmp_path,
                 env={**os.environ, "OMP_NUM_THREADS": "1"})
    spread = _cli(*inputs, *common, "-o", str(tmp_path / "ray"), "--ray-workers", "2", cwd=tmp_path)
    assert alone.returncode == spread.returncode == 1, spread.stderr[-2000:]
    for stem in ("jfk", "again"):
        for fmt in ("txt", "srt"):
            expected = (tmp_path / "alone" / f"{stem}.{fmt}").read_text()
            assert (tmp_path / "ray" / f"{stem}.{fmt}").read_text() == expected and expected.strip()
    assert "missing.wav: no such file" in spread.stderr
    workers = [line.rsplit("[worker ", 1)[1] for line in spread.stderr.splitlines() if "[worker " in line]
    assert len(workers) == 2 and len(set(workers)) == 2  # a summary per file, from two processes
    assert spread.stdout.count("ask not what your country") == 2


def test_ray_workers_refuse_standard_input(tmp_path):
    done = _cli("-", "--ray-workers", "2", cwd=tmp_path)
    assert done.returncode == 2 and "standard input" in done.stderr


@pytest.mark.slow  # starts a Ray cluster
def test_a_model_that_cannot_load_is_one_error_line(data_dir, tmp_path):
    done = _cli(str(data_dir / "jfk.flac"), "-m", "no-such-model", "--ray-workers", "2", "-o", str(tmp_path),
                cwd=tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("tingxie: error:")]
    assert errors == [errors[0]] and "unknown model 'no-such-model'" in errors[0]
    assert "Traceback" not in done.stderr and not list(tmp_path.glob("*.txt"))


@pytest.mark.slow  # Ray's start-up and its connection attempt
def test_no_cluster_at_the_address_is_a_clear_error(data_dir, tmp_path):
    done = _cli(str(data_dir / "jfk.flac"), "--ray-address", "127.0.0.1:1", "-o", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and "could not start or join Ray (127.0.0.1:1): nothing answers there" in done.stderr
    assert "Traceback" not in done.stderr
