"""Jobs and the scheduler over real HTTP with a fake model: lifecycle, cancel, fairness, resume."""

import threading
import time

import httpx
import pytest

from long_audio import english_pieces, joined
from tingxie.server.store import JobStore
from test_server_helpers import DATA, SlowFakeBackend, fake_transcriber, flac_bytes, server, uploads_left, wait_for
from tingxie.options import BatchOptions, TranscribeOptions
from tingxie.engine.pipeline import Transcriber

SHORT = (DATA / "ljspeech" / "LJ001-0002.flac").read_bytes()  # 1.9 s: one segment


@pytest.fixture(scope="module")
def long_audio_bytes():
    return flac_bytes(joined(english_pieces(), seed=3))  # 2 min 13 s


def small_windows(delay_s, max_batch_size=2):
    """A fake with 5 s windows: the 2 min input makes ~30 segments, ~15 batches."""
    from tingxie.planner.shapes import InputShape, ShapeRule

    transcriber = fake_transcriber(delay_s, max_batch_size)
    transcriber.backend.shape = InputShape(ShapeRule.FIXED_WINDOW, 5.0)
    transcriber.vad_options = transcriber.vad_options.__class__(
        **{**transcriber.vad_options.__dict__, "max_segment_s": 5.0, "merge_max_s": 5.0})
    return transcriber


def submit_job(client, content, **data):
    response = client.post("/v1/jobs", files={"file": ("talk.flac", content)}, data=data)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/jobs/{response.json()['id']}"
    return response.json()["id"]


def job_state(client, job_id):
    return client.get(f"/v1/jobs/{job_id}").json()


def finished(client, job_id, timeout_s=60):
    return wait_for(lambda: (v := job_state(client, job_id))["state"] in ("succeeded", "failed", "cancelled") and v,
                    timeout_s)


def test_a_job_reports_progress_and_its_result_in_every_format(tmp_path, long_audio_bytes):
    with server(small_windows(0.05), tmp_path) as (url, service), httpx.Client(base_url=url, timeout=30) as client:
        job_id = submit_job(client, long_audio_bytes, response_format="srt")
        early = job_state(client, job_id)
        assert early["state"] in ("queued", "running") and early["progress"]["audio_total_s"] == pytest.approx(132.7, abs=1)
        conflict = client.get(f"/v1/jobs/{job_id}/result")
        assert conflict.status_code in (409, 200)
        view = finished(client, job_id)
        assert view["state"] == "succeeded" and view["progress"]["fraction"] == 1.0
        assert view["speed"] > 0 and view["peak_memory_bytes"] > 0 and view["finished_at"] >= view["started_at"]
        srt = client.get(f"/v1/jobs/{job_id}/result")  # the job's own response_format by default
        assert srt.status_code == 200 and srt.text.startswith("1\n00:00:")
        same = client.post("/v1/audio/transcriptions", files={"file": ("talk.flac", long_audio_bytes)},
                           data={"response_format": "srt"})
        assert same.text == srt.text  # a job and a request of the same audio agree
        for fmt in ("json", "text", "vtt", "verbose_json"):
            assert client.get(f"/v1/jobs/{job_id}/result", params={"format": fmt}).status_code == 200
        assert client.get(f"/v1/jobs/{job_id}/result", params={"format": "docx"}).status_code == 400
        removed = client.delete(f"/v1/jobs/{job_id}")  # a finished job is removed with its segments
        assert removed.status_code == 200 and removed.json()["deleted"] is True
        assert client.get(f"/v1/jobs/{job_id}").status_code == 404
        assert service.store.get(job_id) is None and service.store.count_segments(job_id) == 0
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 404
        assert client.get("/v1/jobs/nope").status_code == 404
        assert client.get("/v1/jobs/nope/result").status_code == 404
        assert uploads_left(tmp_path) == []


def test_cancelling_a_job_stops_its_work_and_nothing_else(tmp_path, long_audio_bytes):
    with server(small_windows(0.2), tmp_path) as (url, service), httpx.Client(base_url=url, timeout=30) as client:
        job_id = submit_job(client, long_audio_bytes)
        wait_for(lambda: job_state(client, job_id)["progress"]["audio_done_s"] > 0)
        cancelled = client.delete(f"/v1/jobs/{job_id}")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        batches = len(service.transcriber.backend.batches)
        assert client.get(f"/v1/jobs/{job_id}/result").status_code == 409
        assert client.post("/v1/audio/transcriptions", files={"file": ("a.flac", SHORT)}).status_code == 200
        time.sleep(0.5)
        assert len(service.transcriber.backend.batches) <= batches + 2  # the request's batch, one in flight
        assert job_state(client, job_id)["state"] == "cancelled" and service.live == {}
        assert uploads_left(tmp_path) == []


@pytest.mark.parametrize("cross_batching", [True, False])
def test_a_short_request_behind_a_long_job_finishes_long_before_it(tmp_path, long_audio_bytes, cross_batching):
    max_active = 0 if cross_batching else 1
    with server(small_windows(0.1), tmp_path, max_active=max_active) as (url, service), \
            httpx.Client(base_url=url, timeout=60) as client:
        job_id = submit_job(client, long_audio_bytes)
        wait_for(lambda: job_state(client, job_id)["progress"]["audio_done_s"] > 0)
        started = time.monotonic()
        response = client.post("/v1/audio/transcriptions", files={"file": ("a.flac", SHORT)})
        short_s = time.monotonic() - started
        assert response.status_code == 200
        at_short_end = job_state(client, job_id)
        finished(client, job_id)
        long_s = time.monotonic() - started
        if cross_batching:  # least attained service: the short one overtakes
            assert at_short_end["state"] == "running" and at_short_end["progress"]["fraction"] < 0.6
            assert short_s < long_s / 3, (short_s, long_s)
        else:  # one at a time: it waits for the whole job, which is what fairness prevents
            assert at_short_end["state"] == "succeeded" and short_s > 0.9 * long_s


def test_batches_mix_segments_of_concurrent_requests(tmp_path):
    pieces = sorted((DATA / "ljspeech").glob("*.flac"))[:8]
    with server(fake_transcriber(0.3, max_batch_size=8), tmp_path) as (url, service), \
            httpx.Client(base_url=url, timeout=60) as client:
        results = {}

        def send(path):
            results[path.name] = client.post("/v1/audio/transcriptions", files={"file": (path.name, path.read_bytes())})

        threads = [threading.Thread(target=send, args=(path,)) for path in pieces]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert all(r.status_code == 200 and r.json()["text"].startswith("speech 0.00") for r in results.values())
        assert max(len(batch) for batch in service.transcriber.backend.batches) > 1  # one batch, many requests


def test_a_stopped_server_resumes_a_job_from_its_last_finished_segment(tmp_path, long_audio_bytes):
    with server(small_windows(0.3), tmp_path) as (url, service), httpx.Client(base_url=url, timeout=30) as client:
        job_id = submit_job(client, long_audio_bytes, response_format="vtt")
        wait_for(lambda: len(service.store.segments(job_id)) >= 4)
    store = JobStore(tmp_path / "jobs.db")
    done_before = {s.index for s in store.segments(job_id)}
    assert store.get(job_id).state == "running"
    store.close()

    with server(small_windows(0.0), tmp_path) as (url, service), httpx.Client(base_url=url, timeout=30) as client:
        view = finished(client, job_id)
        assert view["state"] == "succeeded"
        recomputed = {i for batch in service.transcriber.backend.batches for i in batch}
        assert len(recomputed) == len(service.store.segments(job_id)) - len(done_before)  # only what was left
        resumed = client.get(f"/v1/jobs/{job_id}/result").text
        uninterrupted = client.post("/v1/audio/transcriptions", files={"file": ("talk.flac", long_audio_bytes)},
                                    data={"response_format": "vtt"}).text
        assert resumed == uninterrupted and resumed.startswith("WEBVTT")
        assert uploads_left(tmp_path) == []


def test_a_client_that_hangs_up_cancels_its_request_and_nothing_else(tmp_path, long_audio_bytes):
    with server(small_windows(0.2), tmp_path) as (url, service), httpx.Client(base_url=url, timeout=30) as client:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/audio/transcriptions", files={"file": ("talk.flac", long_audio_bytes)}, timeout=1.0)
        wait_for(lambda: service.metrics.value("tingxie_finished_total", state="cancelled", kind="request") == 1,
                 timeout_s=10)
        assert service.live == {} and uploads_left(tmp_path) == []
        assert client.post("/v1/audio/transcriptions", files={"file": ("a.flac", SHORT)}).status_code == 200


def test_uploads_no_unfinished_job_owns_are_swept_at_start(tmp_path):
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / "0123.upload").write_bytes(b"left by a crash")
    (tmp_path / "uploads" / "notes.txt").write_text("not ours")
    with server(fake_transcriber(), tmp_path):
        assert [p.name for p in uploads_left(tmp_path)] == ["notes.txt"]


def test_out_of_memory_batches_are_split_and_a_segment_that_never_fits_fails_only_its_request(tmp_path):
    pieces = sorted((DATA / "ljspeech").glob("*.flac"))[:6]
    with server(fake_transcriber(0.2, oom_above_cost_s=60.0), tmp_path) as (url, service), \
            httpx.Client(base_url=url, timeout=60) as client:
        responses = {}
        threads = [threading.Thread(target=lambda p=p: responses.setdefault(p.name, client.post(
            "/v1/audio/transcriptions", files={"file": (p.name, p.read_bytes())}))) for p in pieces]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert all(r.status_code == 200 for r in responses.values())
        assert service.metrics.value("tingxie_oom_retries_total") >= 1
        assert max(len(batch) for batch in service.transcriber.backend.batches) <= 2  # 2 x 30 s fits

    with server(fake_transcriber(oom_above_cost_s=10.0), tmp_path) as (url, service), \
            httpx.Client(base_url=url, timeout=60) as client:
        response = client.post("/v1/audio/transcriptions", files={"file": ("a.flac", SHORT)})
        assert response.status_code == 500 and response.json()["error"]["code"] == "out_of_memory"
        assert client.get("/healthz").status_code == 200 and service.live == {}


class StagedFakeBackend(SlowFakeBackend):
    """A backend with a per-segment text stage (as Paraformer punctuates each segment's words)."""

    def segment_text(self, result):
        import dataclasses

        return dataclasses.replace(result, pieces=tuple(
            dataclasses.replace(p, text=p.text.upper() + ".") for p in result.pieces))


def test_the_server_applies_the_backends_per_segment_text_stage(tmp_path):
    transcriber = Transcriber(TranscribeOptions(batch=BatchOptions(max_batch_size=4)), backend=StagedFakeBackend())
    with server(transcriber, tmp_path) as (url, service), httpx.Client(base_url=url, timeout=30) as client:
        response = client.post("/v1/audio/transcriptions", files={"file": ("a.flac", SHORT)},
                               data={"response_format": "verbose_json"})
    assert response.status_code == 200, response.text
    segments = response.json()["segments"]
    assert segments and all(s["text"].strip().startswith("SPEECH") and s["text"].endswith(".") for s in segments)
