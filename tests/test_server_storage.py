"""Storage failure is a state, not a death (issue 20, points 2 and 3).

On a small tmpfs made by the test (the platform allows it when run as root), the job database
or the upload folder fills up: the scheduler thread survives, the job fails in memory and on
disk once it can be written, /healthz answers 503 with the reason and recovers by itself, and
uploads answer OpenAI-shaped JSON and leave nothing partial. Where no tmpfs can be mounted, the
same failures are injected at the storage layer (OSError(ENOSPC), SQLite's "disk is full").
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from long_audio import english_pieces, joined
from test_server_helpers import DATA, fake_transcriber, flac_bytes, server, wait_for
from tingxie.server.store import JobStore

SHORT = (DATA / "ljspeech" / "LJ001-0002.flac").read_bytes()  # 1.9 s
JFK = (DATA / "jfk.flac").read_bytes()  # 1.1 MB


def mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "4m"):
    """A tmpfs of `size` at folder (None where the platform does not allow mounting one)."""
    mounted = mount_tmpfs(folder, size)
    try:
        yield folder if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave_bytes: int = 0) -> Path:
    """Fill the filesystem of folder until about leave_bytes are free; the filler file."""
    filler = folder / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
                if free <= leave_bytes:
                    break
                out.write(b"\0" * min(64 * 1024, max(4096, free - leave_bytes)))
                out.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


@pytest.fixture(scope="module")
def long_audio_bytes():
    return flac_bytes(joined(english_pieces(), seed=3))  # 2 min 13 s


def small_windows(delay_s):
    from tingxie.planner.shapes import InputShape, ShapeRule

    transcriber = fake_transcriber(delay_s, 2)
    transcriber.backend.shape = InputShape(ShapeRule.FIXED_WINDOW, 5.0)
    transcriber.vad_options = transcriber.vad_options.__class__(
        **{**transcriber.vad_options.__dict__, "max_segment_s": 5.0, "merge_max_s": 5.0})
    return transcriber


def job(client, content):
    response = client.post("/v1/jobs", files={"file": ("talk.flac", content)})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def assert_json_error(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == code
    return response.json()["error"]


def test_a_full_job_database_fails_the_job_keeps_the_scheduler_and_health_recovers(tmp_path, long_audio_bytes):
    with small_disk(tmp_path / "disk") as disk:
        if disk is None:
            pytest.skip("no tmpfs here (needs root); the injected-failure tests below cover the same paths")
        with server(small_windows(0.1), tmp_path, db_path=disk / "jobs.db") as (url, service), \
                httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/healthz").status_code == 200
            job_id = job(client, long_audio_bytes)
            wait_for(lambda: client.get(f"/v1/jobs/{job_id}").json()["progress"]["segments_done"] >= 2)
            filler = fill(disk)
            view = wait_for(lambda: (v := client.get(f"/v1/jobs/{job_id}").json())["state"] != "running" and v, 30)
            assert view["state"] == "failed" and view["error"]["status"] == 503
            assert "job database" in view["error"]["message"]
            health = wait_for(lambda: (h := client.get("/healthz")).status_code == 503 and h, 10)
            assert health.json()["status"] == "unhealthy" and "job database" in health.json()["reason"]
            assert service.scheduler.alive
            refused = client.post("/v1/audio/transcriptions", files={"file": ("a.flac", SHORT)})
            assert_json_error(refused, 503, "storage_unavailable")
            assert refused.headers["retry-after"]

            filler.unlink()  # space returns: healthy again by itself, the failure written to disk
            wait_for(lambda: client.get("/healthz").status_code == 200, 10)
            assert service.store.get(job_id).state == "failed"
            assert service.store.get(job_id).error_status == 503
            again = client.post("/v1/audio/transcriptions", files={"file": ("a.flac", SHORT)})
            assert again.status_code == 200 and again.json()["text"]
            second = job(client, SHORT)
            wait_for(lambda: client.get(f"/v1/jobs/{second}").json()["state"] == "succeeded")


def test_a_full_upload_folder_answers_json_leaves_nothing_partial_and_recovers(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        if disk is None:
            pytest.skip("no tmpfs here (needs root); the injected-failure test below covers the same path")
        uploads = disk / "uploads"
        with server(fake_transcriber(), tmp_path, upload_dir=uploads) as (url, service), \
                httpx.Client(base_url=url, timeout=30) as client:
            filler = fill(disk, leave_bytes=1536 * 1024)  # above the health reserve, below the 1.1 MB upload x2
            big = JFK + JFK
            for _ in range(3):
                response = client.post("/v1/audio/transcriptions", files={"file": ("big.flac", big)})
                assert_json_error(response, 503, "storage_unavailable")
                assert "upload folder" in response.json()["error"]["message"]
                assert [p.name for p in uploads.iterdir() if not p.name.startswith(".")] == []  # nothing partial
            small = client.post("/v1/audio/transcriptions", files={"file": ("a.flac", SHORT)})
            assert small.status_code == 200  # the failed uploads did not eat the space
            filler.unlink()
            assert client.post("/v1/audio/transcriptions", files={"file": ("big.flac", big)}).status_code == 200
            assert client.post("/v1/audio/transcriptions", files={"file": ("jfk.flac", JFK)}).status_code == 200


# -- injected failures: the same paths on any platform ---------------------------------------------

def test_an_injected_disk_full_on_the_database_fails_jobs_not_the_scheduler(tmp_path, monkeypatch, long_audio_bytes):
    with server(small_windows(0.05), tmp_path) as (url, service), httpx.Client(base_url=url, timeout=30) as client:
        full = threading.Event()
        real_record, real_update, real_probe = service.store.record, service.store.update, service.store.probe

        def failing(real, error):
            def call(*args, **kwargs):
                if full.is_set():
                    raise error
                return real(*args, **kwargs)
            return call

        monkeypatch.setattr(service.store, "record", failing(real_record, sqlite3.OperationalError(
            "database or disk is full")))
        monkeypatch.setattr(service.store, "update", failing(real_update, OSError(errno.ENOSPC, "No space left on device")))
        monkeypatch.setattr(service.store, "probe", failing(real_probe, sqlite3.OperationalError(
            "database or disk is full")))
        job_id = job(client, long_audio_bytes)
        wait_for(lambda: client.get(f"/v1/jobs/{job_id}").json()["progress"]["segments_done"] >= 1)
        full.set()
        view = wait_for(lambda: (v := client.get(f"/v1/jobs/{job_id}").json())["state"] == "failed" and v, 30)
        assert "database or disk is full" in view["error"]["message"]
        assert service.store.get(job_id).state in ("queued", "running")  # not written yet ...
        health = wait_for(lambda: (h := client.get("/healthz")).status_code == 503 and h, 10)
        assert "job database cannot be written" in health.json()["reason"]
        assert service.scheduler.alive
        full.clear()
        wait_for(lambda: client.get("/healthz").status_code == 200, 10)
        assert service.store.get(job_id).state == "failed"  # ... and written once it can be
        assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "failed"
        assert client.post("/v1/audio/transcriptions", files={"file": ("a.flac", SHORT)}).status_code == 200


def test_an_injected_full_upload_folder_is_json_and_removes_the_partial_file(tmp_path, monkeypatch):
    import shutil

    from tingxie.server import form

    real_copy = shutil.copyfileobj
    full = threading.Event()

    def copy_then_fail(source, out, length=0):
        if full.is_set():
            out.write(source.read(1000))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_copy(source, out, length)

    monkeypatch.setattr(form.shutil, "copyfileobj", copy_then_fail)
    with server(fake_transcriber(), tmp_path) as (url, service), httpx.Client(base_url=url, timeout=30) as client:
        full.set()
        error = assert_json_error(client.post("/v1/audio/transcriptions", files={"file": ("a.flac", SHORT)}), 503,
                                  "storage_unavailable")
        assert "No space left on device" in error["message"]
        assert list((tmp_path / "uploads").glob("*.upload")) == []
        full.clear()
        assert client.post("/v1/audio/transcriptions", files={"file": ("a.flac", SHORT)}).status_code == 200


def test_health_probes_at_most_once_per_interval_and_clears_when_writable(tmp_path):
    from tingxie.server.health import StorageHealth

    store = JobStore(tmp_path / "jobs.db")
    broken = threading.Event()

    def probe():
        if broken.is_set():
            raise sqlite3.OperationalError("database or disk is full")
        store.probe()

    recovered = []
    health = StorageHealth({"upload folder": tmp_path / "uploads"}, probe, interval_s=0.2)
    health.recovery_hooks.append(lambda: recovered.append(True))
    assert health.reason() is None
    health.failed("job database", OSError(errno.ENOSPC, "No space left on device"))
    assert health.reason() == "job database cannot be written: No space left on device"
    broken.set()
    time.sleep(0.25)
    assert "disk is full" in health.reason() and not recovered
    broken.clear()
    time.sleep(0.25)
    assert health.reason() is None and recovered == [True]
    assert health.reason() is None and recovered == [True]  # the hook runs once per recovery
    huge = StorageHealth({"upload folder": tmp_path}, store.probe, reserve_bytes=2**62)
    assert "upload folder is full" in huge.reason()
    store.close()
