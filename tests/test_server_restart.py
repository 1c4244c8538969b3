"""Kill -9 `tingxie serve` mid-job, start it again: the job finishes, equal to an uninterrupted run."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from long_audio import english_pieces, joined, write_flac
from test_server_helpers import wait_for


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """`tingxie serve` as a child process; one segment per batch, so a job has many batches."""

    def __init__(self, folder):
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(folder / f"server-{self.port}.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tingxie.cli.main", "serve", "--port", str(self.port), "-m", "whisper-tiny.en",
             "--db", str(folder / "jobs.db"), "--max-batch-size", "1"], stderr=self.log, stdout=self.log)
        wait_for(self._healthy, timeout_s=300, interval_s=0.2)

    def _healthy(self) -> bool:
        assert self.process.poll() is None, (self.folder / f"server-{self.port}.log").read_text()
        try:
            return httpx.get(self.url + "/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def logs(self) -> list[dict]:
        return [json.loads(line) for line in (self.folder / f"server-{self.port}.log").read_text().splitlines()]

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
        self.process.wait(60)
        self.log.close()


def submit(url, path) -> str:
    with open(path, "rb") as audio:
        response = httpx.post(url + "/v1/jobs", files={"file": ("talk.flac", audio)}, timeout=60)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def view(url, job_id) -> dict:
    return httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()


def results(url, job_id) -> dict:
    wait_for(lambda: view(url, job_id)["state"] == "succeeded", timeout_s=300, interval_s=0.2)
    return {fmt: httpx.get(f"{url}/v1/jobs/{job_id}/result", params={"format": fmt}, timeout=30).text
            for fmt in ("verbose_json", "srt")}


@pytest.mark.slow
def test_a_job_survives_kill_9_and_equals_an_uninterrupted_run(tmp_path):
    talk = write_flac(tmp_path / "talk.flac", joined(english_pieces(), seed=1))  # 2 min 13 s, several windows
    first = ServerProcess(tmp_path)
    try:
        job_id = submit(first.url, talk)
        wait_for(lambda: view(first.url, job_id)["progress"]["segments_done"] >= 1, timeout_s=300)
        assert view(first.url, job_id)["state"] == "running"  # killed mid-job
    finally:
        first.stop(signal.SIGKILL)
    assert first.process.returncode == -signal.SIGKILL
    assert any(entry["event"] == "submitted" for entry in first.logs())  # structured logs: JSON lines

    second = ServerProcess(tmp_path)
    try:
        resumed_at = view(second.url, job_id)
        assert resumed_at["state"] in ("queued", "running") and resumed_at["progress"]["audio_done_s"] > 0
        assert resumed_at["progress"]["segments_done"] >= 1
        [resumed] = [e for e in second.logs() if e["event"] == "resumed"]
        assert resumed["id"] == job_id and resumed["segments_done"] >= 1
        control = submit(second.url, talk)  # the same audio, never interrupted
        assert results(second.url, job_id) == results(second.url, control)
        assert "fellow americans" in json.loads(results(second.url, job_id)["verbose_json"])["text"].lower()
    finally:
        second.stop()
    assert second.process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    assert second.logs()[-1]["event"].startswith("Finished server process")
