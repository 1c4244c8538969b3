"""Limits before the body, the body timeout, the upload cap, security headers, job retention and
start-up on storage that cannot be written (issue 20, points 4 and 5), over raw sockets where the
point is what the server answers while the client is still sending."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from long_audio import english_pieces, joined
from test_server_helpers import DATA, fake_transcriber, flac_bytes, server, uploads_left, wait_for
from test_server_storage import fill, small_disk
from tingxie.errors import OptionError
from tingxie.server.config import ServerConfig
from tingxie.server.store import JobStore

SHORT = (DATA / "ljspeech" / "LJ001-0002.flac").read_bytes()
BOUNDARY = "tingxieboundary"


def multipart_head(url: str, length: int, path: str = "/v1/audio/transcriptions", headers: str = "") -> bytes:
    host = urlparse(url).netloc
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {length}\r\n{headers}\r\n").encode()


def part_head() -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.flac\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()


def connect(url: str, timeout_s: float = 10.0) -> socket.socket:
    parsed = urlparse(url)
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=timeout_s)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    """Status, headers and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def answered_while_sending(url: str, length: int, extra_headers: str = "", path: str = "/v1/audio/transcriptions"):
    """Send the headers and 64 KiB of a body declared `length` long, then read: the answer must
    come while most of the body is still unsent."""
    with connect(url, timeout_s=5.0) as sock:
        sock.sendall(multipart_head(url, length, path, extra_headers) + part_head() + b"\0" * 65536)
        started = time.monotonic()
        status, headers, body = read_response(sock)
        return status, headers, json.loads(body), time.monotonic() - started


@pytest.fixture(scope="module")
def long_audio_bytes():
    return flac_bytes(joined(english_pieces(), seed=3))


def test_413_and_401_are_answered_from_the_headers_while_the_client_is_still_sending(tmp_path):
    with server(fake_transcriber(), tmp_path, max_upload_bytes=2**20, api_keys=("k",)) as (url, service):
        status, headers, body, waited = answered_while_sending(url, 100 * 2**20, "Authorization: Bearer k\r\n")
        assert status == 413 and body["error"]["code"] == "upload_too_large" and waited < 3
        status, _, body, waited = answered_while_sending(url, 5 * 2**20)  # no key
        assert status == 401 and body["error"]["code"] == "invalid_api_key" and waited < 3
        assert uploads_left(tmp_path) == [] and service.live == {}


def test_429_is_answered_from_the_headers_while_the_queue_is_full(tmp_path, long_audio_bytes):
    with server(fake_transcriber(0.5), tmp_path, max_queue=1) as (url, service), \
            httpx.Client(base_url=url, timeout=30) as client:
        job = client.post("/v1/jobs", files={"file": ("talk.flac", long_audio_bytes)})
        assert job.status_code == 202
        status, headers, body, waited = answered_while_sending(url, 50 * 2**20)
        assert status == 429 and body["error"]["code"] == "queue_full" and int(headers["retry-after"]) >= 1
        assert waited < 3
        client.delete(f"/v1/jobs/{job.json()['id']}")
        wait_for(lambda: service.live == {})
        assert client.post("/v1/audio/transcriptions", files={"file": ("a.flac", SHORT)}).status_code == 200


def test_a_stalled_body_times_out_and_the_upload_cap_holds_until_it_does(tmp_path):
    with server(fake_transcriber(), tmp_path, body_timeout_s=1.5, max_uploads=2) as (url, service), \
            httpx.Client(base_url=url, timeout=30) as client:
        stalled = [connect(url) for _ in range(2)]
        for sock in stalled:  # headers and a little of the body, then nothing
            sock.sendall(multipart_head(url, 100_000) + part_head() + b"\0" * 100)
        time.sleep(0.3)
        over = client.post("/v1/audio/transcriptions", files={"file": ("a.flac", SHORT)})
        assert over.status_code == 429 and over.json()["error"]["code"] == "too_many_uploads"
        for sock in stalled:
            started = time.monotonic()
            status, _, body = read_response(sock)
            assert status == 408 and json.loads(body)["error"]["code"] == "body_timeout"
            assert time.monotonic() - started < 5
            sock.close()
        assert client.post("/v1/audio/transcriptions", files={"file": ("a.flac", SHORT)}).status_code == 200
        assert uploads_left(tmp_path) == [] and service.live == {}


def test_security_headers_and_openapi_behind_the_key(tmp_path):
    from tingxie.ui.mount import page_mount

    with server(fake_transcriber(), tmp_path, api_keys=("k",), mount=page_mount()) as (url, _), \
            httpx.Client(base_url=url, timeout=30) as client:
        key = {"Authorization": "Bearer k"}
        for response in (client.get("/healthz"), client.get("/v1/models", headers=key), client.get("/v1/models"),
                         client.get("/ui/", headers=key)):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "SAMEORIGIN"
            assert "frame-ancestors 'self'" in response.headers["content-security-policy"]
        assert client.get("/ui/", headers=key).status_code == 200  # the page still loads under them
        assert client.get("/openapi.json").status_code == 401
        assert client.get("/openapi.json", headers=key).status_code == 200


def test_keep_jobs_expires_finished_jobs_by_count_and_by_age(tmp_path):
    from tingxie.server.config import parse_keep
    from tingxie.server.retention import Retention

    store = JobStore(tmp_path / "jobs.db")
    now = 1_000_000.0
    for n, state in enumerate(("succeeded", "failed", "cancelled", "succeeded", "running")):
        store.create(f"j{n}", {}, "", 1.0, now + n)
        store.update(f"j{n}", state=state, finished_at=None if state == "running" else now + n)
    assert Retention(store, "3", clock=lambda: now).expire() == ["j0"]  # the newest 3 finished stay
    assert sorted(Retention(store, "2s", clock=lambda: now + 4.5).expire()) == ["j1", "j2"]
    assert [r.id for r in store.recent()] == ["j4", "j3"]  # the running job is never expired
    assert parse_keep("7d") == (7 * 86400, None) and parse_keep("1000") == (None, 1000)
    for bad in ("0", "-3", "7x", "", "d"):
        with pytest.raises(OptionError, match="--keep-jobs"):
            ServerConfig(db_path=tmp_path / "x.db", keep_jobs=bad)
    store.close()


def test_the_server_expires_finished_jobs_past_keep_jobs_with_their_segments(tmp_path, long_audio_bytes):
    with server(fake_transcriber(1.0, max_batch_size=1), tmp_path, keep_jobs="1s") as (url, service), \
            httpx.Client(base_url=url, timeout=30) as client:
        short = client.post("/v1/jobs", files={"file": ("a.flac", SHORT)}).json()["id"]
        wait_for(lambda: client.get(f"/v1/jobs/{short}").json()["state"] == "succeeded")
        assert service.store.count_segments(short) > 0
        long = client.post("/v1/jobs", files={"file": ("talk.flac", long_audio_bytes)}).json()["id"]
        wait_for(lambda: client.get(f"/v1/jobs/{short}").status_code == 404, 10)  # by the retention thread
        assert service.store.count_segments(short) == 0
        assert client.get(f"/v1/jobs/{long}").json()["state"] in ("queued", "running")  # unfinished: kept


def test_start_up_on_storage_that_cannot_be_written_is_one_line(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    done = subprocess.run([sys.executable, "-m", "tingxie.cli.main", "serve", "-m", "whisper-tiny.en", "--port", "0",
                           "--no-ui", "--db", str(blocker / "jobs.db")], capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if not line.startswith("{")]  # JSON logs aside
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(lines) == 1 and lines[0].startswith("tingxie: error: cannot start") and str(blocker) in lines[0], done.stderr


def test_start_up_on_a_full_disk_is_one_line(tmp_path):
    with small_disk(tmp_path / "disk", "1m") as disk:
        if disk is None:
            pytest.skip("no tmpfs here (needs root); the test above covers a folder that cannot be written")
        fill(disk)
        done = subprocess.run([sys.executable, "-m", "tingxie.cli.main", "serve", "-m", "whisper-tiny.en", "--port", "0",
                               "--no-ui", "--db", str(disk / "jobs.db")], capture_output=True, text=True, timeout=120)
        lines = [line for line in done.stderr.splitlines() if not line.startswith("{")]
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert len(lines) == 1 and "cannot start" in lines[0], done.stderr
