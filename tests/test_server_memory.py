"""The server's memory budget (issue 19): the adaptive budget in the job status and /metrics, and
admission (429) from an account of the loaded models, one batch and the decoded audio every
admitted request may hold.

Fake backends on a scripted probe: resident memory is 100 MiB whatever happens and free memory
is what the test says, so every number below is exact.
"""

from __future__ import annotations

import threading

import httpx
import pytest

from long_audio import english_pieces, joined
from scripted_memory import ScriptedProbe
from test_server_helpers import DATA, SlowFakeBackend, flac_bytes, server, uploads_left, wait_for
from tingxie.engine.pipeline import Transcriber
from tingxie.memory.planning import MemoryPlanner
from tingxie.options import BatchOptions, TranscribeOptions
from tingxie.planner.memory_model import MemoryModel
from tingxie.planner.shapes import InputShape, ShapeRule
from tingxie.server.memory_account import BYTES_PER_AUDIO_S, decoded_audio_bound

MiB = 1024**2
WINDOW = InputShape(ShapeRule.FIXED_WINDOW, 30.0)
ONE_WINDOW = MemoryModel(fixed=0.0, per_item_s=1.0 * MiB, per_item_s2=0.0)  # a 30 s window: 30 MiB
SHORT = (DATA / "ljspeech" / "LJ001-0002.flac").read_bytes()  # 1.9 s: one segment


class PressureBackend(SlowFakeBackend):
    """After batch `at`, another process takes memory: only `left` stays free."""

    def __init__(self, probe, delay_s, at=None, left=None):
        super().__init__(delay_s)
        self.probe, self.at, self.left = probe, at, left

    def transcribe_batch(self, batch, decode=None):
        results = super().transcribe_batch(batch)
        if len(self.batches) == self.at:
            self.probe.available = self.left
        return results


def budgeted(probe, budget_mib, backend, max_batch_size=8):
    memory = MemoryPlanner(ONE_WINDOW, probe, total_budget_bytes=budget_mib * MiB, given=f"{budget_mib}MiB",
                           shape=WINDOW)
    return Transcriber(TranscribeOptions(batch=BatchOptions(max_batch_size=max_batch_size)), backend=backend,
                       memory=memory)


@pytest.fixture(scope="module")
def long_audio_bytes():
    return flac_bytes(joined(english_pieces(), seed=3))  # 2 min 13 s


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_the_job_status_and_metrics_show_the_budget_shrinking_when_free_memory_goes(tmp_path, long_audio_bytes):
    probe = ScriptedProbe(64 * 1024 * MiB)
    # after the 2nd batch only 200 MiB stay free: 70 % of (100 + 200) MiB less the 5 % reserve, less
    # the 100 MiB resident, leaves 99.5 MiB for batches where the budget allowed 850 MiB
    backend = PressureBackend(probe, 0.15, at=2, left=200 * MiB)
    with server(budgeted(probe, 1000, backend, max_batch_size=1), tmp_path) as (url, service), \
            httpx.Client(base_url=url, timeout=30) as client:
        job = client.post("/v1/jobs", files={"file": ("talk.flac", long_audio_bytes)}).json()["id"]
        first = wait_for(lambda: (view := client.get(f"/v1/jobs/{job}").json())["batches"] >= 1 and view)
        assert first["memory"]["budget_bytes"] == 1000 * MiB
        assert first["memory"]["working_budget_bytes"] == int(1000 * MiB * 0.95) - 100 * MiB
        assert first["memory"]["budget_shrinks"] == 0
        assert first["memory"]["reserved_audio_bytes"] == decoded_audio_bound(WINDOW, 1, 132.7)  # 1 queued: 120 s

        shrunk = wait_for(lambda: (view := client.get(f"/v1/jobs/{job}").json())["memory"] and
                          view["memory"]["budget_shrinks"] == 1 and view)
        assert shrunk["state"] == "running"
        assert shrunk["memory"]["working_budget_bytes"] == int(int(0.7 * 300 * MiB) * 0.95) - 100 * MiB
        assert shrunk["memory"]["lowest_working_budget_bytes"] <= shrunk["memory"]["working_budget_bytes"]
        scraped = client.get("/metrics").text
        assert metric(scraped, "tingxie_memory_budget_bytes") == 1000 * MiB
        assert metric(scraped, "tingxie_memory_budget_shrinks") == 1
        assert metric(scraped, "tingxie_memory_working_budget_bytes") == int(int(0.7 * 300 * MiB) * 0.95) - 100 * MiB
        assert metric(scraped, "tingxie_memory_models_bytes") == 100 * MiB
        assert metric(scraped, "tingxie_memory_reserved_bytes") == shrunk["memory"]["reserved_audio_bytes"]

        wait_for(lambda: client.get(f"/v1/jobs/{job}").json()["state"] == "succeeded")
        scraped = client.get("/metrics").text
        assert metric(scraped, "tingxie_memory_reserved_bytes") == 0  # nothing admitted holds any
        assert metric(scraped, "tingxie_memory_decoded_audio_bytes") == 0


def test_admission_answers_429_when_the_budget_cannot_hold_another_requests_audio(tmp_path, long_audio_bytes):
    probe = ScriptedProbe(64 * 1024 * MiB)
    # 160 MiB less 5 % is 152 MiB: models 100 + one batch 30 + each 2 min job's audio reserve
    # (2 queued + the running + the open span, 30 s each, and the decoder's 30 s chunk: 150 s of
    # float32) 9.2 MiB: two jobs fit (148.3 MiB), a third does not (157.5), a 1.9 s clip does (0.3)
    reserve = decoded_audio_bound(WINDOW, 2, 132.7)
    assert reserve == 150 * BYTES_PER_AUDIO_S
    backend = SlowFakeBackend(0.3)
    with server(budgeted(probe, 160, backend, max_batch_size=1), tmp_path, queued_segments_per_job=2) \
            as (url, service), httpx.Client(base_url=url, timeout=60) as client:
        jobs = [client.post("/v1/jobs", files={"file": (f"talk{n}.flac", long_audio_bytes)}) for n in range(2)]
        assert [job.status_code for job in jobs] == [202, 202]
        refused = client.post("/v1/jobs", files={"file": ("talk2.flac", long_audio_bytes)})
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["code"] == "memory_full" and error["type"] == "rate_limit_error"
        assert "152.0 MiB" in error["message"] and "18.3 MiB" in error["message"]  # the budget, two reserves
        assert int(refused.headers["Retry-After"]) >= 1
        assert len(uploads_left(tmp_path)) == 2  # the refused upload is not kept

        short = client.post("/v1/audio/transcriptions", files={"file": ("a.flac", SHORT)})  # a small one still fits
        assert short.status_code == 200 and short.json()["text"]

        ids = [job.json()["id"] for job in jobs]  # the admitted jobs are never starved: both finish
        for job_id in ids:
            wait_for(lambda job_id=job_id: client.get(f"/v1/jobs/{job_id}").json()["state"] == "succeeded", 120)
        assert service.metrics.value("tingxie_rejected_total", reason="memory_full") == 1
        again = client.post("/v1/jobs", files={"file": ("talk3.flac", long_audio_bytes)})
        assert again.status_code == 202  # room came back with them


def test_batches_leave_the_admitted_works_unfilled_reserve_free(tmp_path, long_audio_bytes):
    """Under a budget that holds 3 windows beside the resident set, the decoded audio the admitted
    jobs may still queue keeps its room: batches are planned with less, never below one window."""
    probe = ScriptedProbe(64 * 1024 * MiB)
    backend = SlowFakeBackend(0.1)
    with server(budgeted(probe, 200, backend), tmp_path, queued_segments_per_job=2) as (url, service), \
            httpx.Client(base_url=url, timeout=60) as client:
        barrier = threading.Barrier(3)
        answers = []

        def post():
            barrier.wait()
            answers.append(client.post("/v1/audio/transcriptions", files={"file": ("talk.flac", long_audio_bytes)}))

        threads = [threading.Thread(target=post) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert len({a.json()["text"] for a in answers}) == 1
        # 190 - 100 MiB resident leaves 90 MiB: 3 windows with nothing reserved; the three
        # requests' unfilled reserves (up to 3 x 9.2 MiB) leave room for 2
        assert max(len(batch) for batch in backend.batches) == 2
        assert metric(client.get("/metrics").text, "tingxie_memory_reserved_bytes") == 0


def test_a_real_model_server_shows_its_budget_and_account(tiny_server):
    """whisper-tiny.en: the budget the planner measured is what /metrics and the job status show,
    the account counts the loaded model, and nothing is held or reserved once the job is done."""
    url, service = tiny_server
    planner = service.models.memory
    with httpx.Client(base_url=url, timeout=300) as client:
        job = client.post("/v1/jobs", files={"file": ("jfk.flac", (DATA / "jfk.flac").read_bytes())}).json()
        assert job["memory"]["budget_bytes"] == planner.total_budget_bytes
        assert job["memory"]["reserved_audio_bytes"] == decoded_audio_bound(
            service.scheduler.backend.shape, service.scheduler.queued_per_work, job["progress"]["audio_total_s"])
        wait_for(lambda: client.get(f"/v1/jobs/{job['id']}").json()["state"] == "succeeded", 300)
        scraped = client.get("/metrics").text
    assert metric(scraped, "tingxie_memory_budget_bytes") == planner.total_budget_bytes
    assert 0 < metric(scraped, "tingxie_memory_working_budget_bytes") < planner.total_budget_bytes
    assert metric(scraped, "tingxie_memory_models_bytes") > 50 * MiB  # tiny.en's weights and runtime
    assert metric(scraped, "tingxie_memory_reserved_bytes") == metric(scraped, "tingxie_memory_decoded_audio_bytes") == 0


def test_decoded_audio_counts_against_a_cpu_budget_only():
    """Audio is decoded into host memory: on a GPU the budget is the GPU's, where only batches go."""
    from types import SimpleNamespace

    from tingxie.server.memory_account import MemoryAccount

    class GpuProbe(ScriptedProbe):
        device = "cuda"

    held = SimpleNamespace(pending=[SimpleNamespace(samples=SimpleNamespace(nbytes=5 * MiB))], in_flight_audio_bytes=0,
                           reserve_bytes=0, terminal=False)
    # on a CPU the RSS holds the decoded audio: the models' share is the resident 100 MiB less the
    # 5 MiB counted (never seen idle here); a GPU's memory holds none of it
    for probe, reserve, models in ((ScriptedProbe(64 * 1024 * MiB), decoded_audio_bound(WINDOW, 8, None), 95 * MiB),
                                   (GpuProbe(64 * 1024 * MiB), 0, 100 * MiB)):
        planner = MemoryPlanner(ONE_WINDOW, probe, total_budget_bytes=1000 * MiB, shape=WINDOW)
        account = MemoryAccount(lambda: planner, lambda: [held], lambda: 30 * MiB)
        assert account.reserve_for(WINDOW, 8, None) == reserve == (21_120_000 if probe.device == "cpu" else 0)
        figures = account.figures()
        assert (figures.models, figures.audio_held, figures.batch) == (models, 5 * MiB, 30 * MiB)


# -- the memory block of a finished job, from its row ----------------------------------------------

def test_a_finished_job_keeps_its_memory_block_in_the_store_and_after_a_restart(tmp_path, long_audio_bytes):
    """The job's row keeps the budget's figures: GET /v1/jobs/{id} shows them once the job is only
    a row (no longer in memory), and a restarted server shows the same."""
    probe = ScriptedProbe(64 * 1024 * MiB)
    backend = PressureBackend(probe, 0.05, at=2, left=200 * MiB)  # the same shrink as the first test
    shrunk = int(int(0.7 * 300 * MiB) * 0.95) - 100 * MiB
    with server(budgeted(probe, 1000, backend, max_batch_size=1), tmp_path) as (url, service), \
            httpx.Client(base_url=url, timeout=30) as client:
        job = client.post("/v1/jobs", files={"file": ("talk.flac", long_audio_bytes)}).json()["id"]
        wait_for(lambda: client.get(f"/v1/jobs/{job}").json()["state"] == "succeeded")
        wait_for(lambda: job not in service.live)  # from here on the view is the row's
        stored = client.get(f"/v1/jobs/{job}").json()["memory"]
        assert stored == service.store.get(job).memory
    assert stored["budget_bytes"] == 1000 * MiB and stored["budget_shrinks"] == 1
    assert stored["working_budget_bytes"] == shrunk  # the working budget at its end
    assert 30 * MiB <= stored["lowest_working_budget_bytes"] <= shrunk  # never below one window
    assert stored["reserved_audio_bytes"] == decoded_audio_bound(WINDOW, 1, 132.7)  # what it had reserved
    assert stored["decoded_audio_bytes"] == 0  # it holds none once done
    with server(budgeted(ScriptedProbe(64 * 1024 * MiB), 1000, SlowFakeBackend()), tmp_path) as (url, _):
        assert httpx.get(f"{url}/v1/jobs/{job}").json()["memory"] == stored


def test_a_resumed_job_goes_on_from_its_rows_memory_figures(tmp_path):
    """A job cut off by a restart keeps the shrinks and the lowest working budget of its first
    run: the new process's planner counts its own from zero, the job's status counts both."""
    from tingxie.server.store import JobStore
    from tingxie.server.work import RequestOptions

    upload = tmp_path / "uploads" / "cut-off.upload"
    upload.parent.mkdir()
    upload.write_bytes(SHORT)
    store = JobStore(tmp_path / "jobs.db")
    store.create("cut-off", RequestOptions(filename="a.flac").to_json(), str(upload), 1.9, 1.0)
    store.update("cut-off", state="running", started_at=1.5,
                 memory={"budget_bytes": 1000 * MiB, "working_budget_bytes": 40 * MiB,
                         "lowest_working_budget_bytes": 40 * MiB, "budget_shrinks": 2,
                         "decoded_audio_bytes": 0, "reserved_audio_bytes": 0})
    store.close()
    with server(budgeted(ScriptedProbe(64 * 1024 * MiB), 1000, SlowFakeBackend()), tmp_path) as (url, service):
        done = wait_for(lambda: (view := httpx.get(f"{url}/v1/jobs/cut-off").json())["state"] == "succeeded"
                        and view)
        assert service.transcriber.memory.trace.shrinks == 0  # this run had all it asked for
    assert done["memory"]["budget_shrinks"] == 2
    assert done["memory"]["lowest_working_budget_bytes"] == 40 * MiB  # its first run's, below this run's 850 MiB
    assert done["memory"]["working_budget_bytes"] == int(1000 * MiB * 0.95) - 100 * MiB


def test_rows_stored_before_the_memory_block_read_as_null(tmp_path):
    """A schema 3 database (no memory column) is migrated: its jobs stay readable, with memory null."""
    import sqlite3

    from tingxie.server.job_view import record_view
    from tingxie.server.store import JobStore

    path = tmp_path / "v3.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, options TEXT NOT NULL, upload_path TEXT,
            audio_total_s REAL, audio_done_s REAL NOT NULL DEFAULT 0, segments_total INTEGER,
            created_at REAL NOT NULL, started_at REAL, finished_at REAL, processing_s REAL NOT NULL DEFAULT 0,
            peak_memory_bytes INTEGER, language TEXT, error TEXT, error_status INTEGER,
            batches INTEGER NOT NULL DEFAULT 0, oom_retries INTEGER NOT NULL DEFAULT 0, speaker_turns TEXT);
        CREATE TABLE segments (job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
            start REAL NOT NULL, "end" REAL NOT NULL, result TEXT NOT NULL, PRIMARY KEY (job_id, idx));
        INSERT INTO jobs (id, state, options, created_at, batches) VALUES ('old', 'succeeded', '{}', 1.0, 3);
        PRAGMA user_version=3;""")
    db.close()
    store = JobStore(path)
    record = store.get("old")
    assert record.memory is None and record.batches == 3
    assert record_view(record, 0)["memory"] is None
    store.update("old", memory={"budget_bytes": 5})
    store.close()
    assert JobStore(path).get("old").memory == {"budget_bytes": 5}
