"""--keep-jobs through the HTTP API (issue 20): a count holds as jobs finish, unfinished jobs are
never expired, and DELETE removes a finished job with its segments. (By age:
tests/test_server_guard.py; the store's rule alone: test_keep_jobs_expires_finished_jobs_by_count_and_by_age.)"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from long_audio import english_pieces, joined
from test_server_helpers import DATA, fake_transcriber, flac_bytes, server, wait_for

SHORT = (DATA / "ljspeech" / "LJ001-0002.flac").read_bytes()
JFK = (DATA / "jfk.flac").read_bytes()


def finished_job(client: httpx.Client, content: bytes, name: str = "a.flac") -> str:
    job_id = client.post("/v1/jobs", files={"file": (name, content)}).json()["id"]
    wait_for(lambda: client.get(f"/v1/jobs/{job_id}").json()["state"] == "succeeded")
    return job_id


@pytest.mark.slow  # waits for jobs to finish and expire (seconds)
def test_keep_jobs_by_count_expires_the_oldest_finished_jobs_as_new_ones_finish(tmp_path):
    # 9 min (4 x 2 min 13 s) in 0.3 s batches of one segment: unfinished while the short jobs, served
    # first by least attained service, all finish
    long_audio = flac_bytes(np.concatenate([joined(english_pieces(), seed=seed) for seed in range(4)]))
    with server(fake_transcriber(0.3, max_batch_size=1), tmp_path, keep_jobs="2") as (url, service), \
            httpx.Client(base_url=url, timeout=30) as client:
        long = client.post("/v1/jobs", files={"file": ("talk.flac", long_audio)}).json()["id"]
        done = [finished_job(client, SHORT if n % 2 else JFK, f"clip{n}.flac") for n in range(4)]
        # the count's thread ticks once a minute: that these go within seconds is the finish poke
        wait_for(lambda: [client.get(f"/v1/jobs/{j}").status_code for j in done] == [404, 404, 200, 200], 10)
        assert [service.store.count_segments(j) for j in done[:2]] == [0, 0]  # their segments went with them
        assert all(service.store.count_segments(j) > 0 for j in done[2:])
        assert client.get(f"/v1/jobs/{done[0]}/result").status_code == 404
        assert client.get(f"/v1/jobs/{long}").json()["state"] in ("queued", "running")  # never expired unfinished

        client.delete(f"/v1/jobs/{long}")  # cancelled: a finished job now, the newest
        wait_for(lambda: client.get(f"/v1/jobs/{done[2]}").status_code == 404, 10)
        assert client.get(f"/v1/jobs/{long}").json()["state"] == "cancelled"
        assert client.get(f"/v1/jobs/{done[3]}").status_code == 200


def test_delete_removes_a_finished_job_and_its_segments_and_only_cancels_an_unfinished_one(tmp_path):
    long_audio = flac_bytes(joined(english_pieces(), seed=3))
    with server(fake_transcriber(0.3, max_batch_size=1), tmp_path) as (url, service), \
            httpx.Client(base_url=url, timeout=30) as client:
        job = finished_job(client, JFK)
        kept = finished_job(client, SHORT)
        assert service.store.count_segments(job) > 0
        removed = client.delete(f"/v1/jobs/{job}")
        assert removed.status_code == 200 and removed.json() == {"id": job, "object": "transcription.job.deleted",
                                                                 "deleted": True}
        assert service.store.count_segments(job) == 0 and service.store.get(job) is None
        assert client.get(f"/v1/jobs/{job}").status_code == 404
        assert client.delete(f"/v1/jobs/{job}").status_code == 404
        assert client.get(f"/v1/jobs/{kept}/result").status_code == 200  # the other job is untouched

        running = client.post("/v1/jobs", files={"file": ("talk.flac", long_audio)}).json()["id"]
        cancelled = client.delete(f"/v1/jobs/{running}")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        assert client.get(f"/v1/jobs/{running}").json()["state"] == "cancelled"  # kept, to be read
