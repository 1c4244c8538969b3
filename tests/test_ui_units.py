"""The web page's parts without a browser: bench file reading, choices, views, the jobs glue,
the page runner, the job store's new figures and migration, and the command line."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from test_server_helpers import DATA, fake_transcriber, server, wait_for
from tingxie.cli.main import build_parser
from tingxie.segments import TextSegment, Transcript
from tingxie.server.config import ServerConfig
from tingxie.server.runner import build
from tingxie.server.store import JobStore
from tingxie.ui import bench_panel
from tingxie.ui.jobs import PageChoices, PageError, PageJobs
from tingxie.ui.mount import page_mount
from tingxie.ui.page_runner import PageRunner
from tingxie.ui.view import figures, result_files, status_line, timed_text

JFK = DATA / "jfk.flac"


# -- the bench panel ----------------------------------------------------------------------------

def bench_file(tmp_path: Path, data) -> Path:
    path = tmp_path / "bench.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_bench_output_is_read_tolerantly_into_the_table_and_the_plot(tmp_path):
    path = bench_file(tmp_path, {
        "command": "tingxie bench x", "model": "m", "audio": "a.flac", "audio_s": 60.0, "device": "cpu", "runs": 3,
        "new_header_key": [1, 2],
        "rows": [
            {"name": "auto", "kind": "tingxie", "batch_size_s": None, "budget_bytes": 3 * 2**30, "wall_s": 2.345,
             "speed": 25.61, "peak_rss_bytes": 512 * 2**20, "batches": 4, "padding_waste": 0.1234,
             "oom_retries": 1, "wer": 0.05, "unknown": "kept out"},
            {"name": "funasr 300", "kind": "funasr", "batch_size_s": 300, "wall_s": 4.0, "speed": 15.0,
             "peak_rss_bytes": 900 * 2**20},  # keys missing: shown empty
            {"name": "no memory", "kind": "fw-batched", "speed": 3.0, "peak_rss_bytes": None},
            "not a row",
        ]})
    results = bench_panel.load_bench(path)
    assert "model **m**" in results.summary() and "`tingxie bench x`" in results.summary()
    frame = bench_panel.table(results)
    assert list(frame.columns) == list(bench_panel.TABLE_COLUMNS)
    assert frame["name"].tolist() == ["auto", "funasr 300", "no memory"]
    first = frame.iloc[0].to_dict()
    assert first["budget (MiB)"] == 3072 and first["speed (×)"] == 25.6 and first["peak RSS (MiB)"] == 512
    assert first["OOM retries"] == 1 and first["padding waste"] == 0.123
    assert frame.iloc[1]["batch_size_s"] == 300 and frame.iloc[1][["batches", "WER"]].isna().all()
    plot = bench_panel.plot_frame(results)
    assert plot["name"].tolist() == ["auto", "funasr 300"]  # the case without a peak is not a point
    assert plot[bench_panel.PLOT_X].tolist() == [512.0, 900.0]
    assert bench_panel.axis_limits(plot) == ([0.0, pytest.approx(1035.0)], [0.0, pytest.approx(25.6 * 1.15)])


@pytest.mark.parametrize("content, words", [
    ("{not json", "not a JSON file"),
    ({"rows": "nope"}, "no list of rows"),
    ({"rows": [{"kind": "tingxie"}]}, "no result rows"),
    ([1, 2], "no list of rows"),
])
def test_bad_bench_files_are_refused_in_plain_words(tmp_path, content, words):
    with pytest.raises(bench_panel.BenchFileError, match=words):
        bench_panel.load_bench(bench_file(tmp_path, content))
    with pytest.raises(bench_panel.BenchFileError, match="cannot read"):
        bench_panel.load_bench(tmp_path / "missing.json")


# -- choices and views --------------------------------------------------------------------------

def test_choices_are_parsed_once_and_bad_ones_worded_without_flags():
    assert PageChoices.parse("whisper-base", "auto", "auto", "") == PageChoices("whisper-base")
    assert PageChoices.parse("m", " zh ", "60", "2GiB") == PageChoices("m", "zh", 60.0, "2GiB")
    for args, words in [(("m", "auto", "fast", ""), "batch-size-s must be 'auto'"),
                        (("m", "auto", "-5", ""), "positive"),
                        (("m", "auto", "auto", "lots"), "memory budget"),
                        (("m", "english!", "auto", ""), "language"),
                        (("", "auto", "auto", ""), "choose a model")]:
        with pytest.raises(PageError, match=words) as caught:
            PageChoices.parse(*args)
        assert "--" not in str(caught.value)


def view(state="running", done=30.0, total=120.0, **extra):
    return {"id": "j", "state": state, "filename": "talk.flac", "model": "whisper-tiny.en", "runs_on": "server",
            "progress": {"audio_done_s": done, "audio_total_s": total, "fraction": done / total if total else 0,
                         "segments_done": 2}, "speed": 4.0, "peak_memory_bytes": 300 * 2**20, "wall_s": 7.5,
            "batches": 3, "oom_retries": 1, "error": None} | extra


def test_status_line_and_figures_say_what_the_job_did():
    assert status_line(view()) == "**Transcribing:** talk.flac: 30.0 s of 2:00 (25%) transcribed, 4.0× real time"
    failed = status_line(view("failed", error={"message": "talk.flac: not an audio file", "status": 400}))
    assert failed == "**Failed:** talk.flac: not an audio file"
    table = figures(view("succeeded", 120.0))
    for row in ("| audio length | 2:00 |", "| wall time | 7.5 s |", "| speed | 4.0× real time |",
                "| peak memory | 300.0 MiB |", "| batches | 3 |", "| OOM retries | 1 |"):
        assert row in table
    assert "| audio length | – |" in figures(view(total=None, done=0.0))


def test_timed_text_and_files_come_from_the_writers(tmp_path):
    from tingxie.writers import render

    transcript = Transcript("a.flac", "m", "en", [TextSegment(0.0, 1.5, " Hello."), TextSegment(61.25, 62.0, "Bye")])
    assert timed_text(transcript) == ("[00:00:00.000 → 00:00:01.500]  Hello.\n"
                                      "[00:01:01.250 → 00:01:02.000]  Bye")
    files = result_files(transcript, "job1", "a.flac", root=tmp_path)
    assert sorted(files) == ["json", "srt", "txt", "vtt"] and files["srt"].name == "a.srt"
    for fmt, path in files.items():
        assert path.read_text(encoding="utf-8") == render(transcript, fmt)


def test_old_download_copies_are_removed_when_another_job_is_shown(tmp_path):
    import os
    import time

    transcript = Transcript("a.flac", "m", "en", [TextSegment(0.0, 1.5, "Hello.")])
    old = result_files(transcript, "old-job", "a.flac", root=tmp_path)["txt"].parent
    recent = result_files(transcript, "recent-job", "a.flac", root=tmp_path)["txt"].parent
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    result_files(transcript, "new-job", "a.flac", root=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new-job", "recent-job"]
    assert recent.is_dir() and not old.exists()


# -- the store's new figures ----------------------------------------------------------------------

def test_a_version_1_job_database_is_migrated_and_keeps_its_jobs(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, options TEXT NOT NULL, upload_path TEXT,
            audio_total_s REAL, audio_done_s REAL NOT NULL DEFAULT 0, segments_total INTEGER,
            created_at REAL NOT NULL, started_at REAL, finished_at REAL, processing_s REAL NOT NULL DEFAULT 0,
            peak_memory_bytes INTEGER, language TEXT, error TEXT, error_status INTEGER);
        CREATE TABLE segments (job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
            start REAL NOT NULL, "end" REAL NOT NULL, result TEXT NOT NULL, PRIMARY KEY (job_id, idx));
        INSERT INTO jobs (id, state, options, created_at) VALUES ('old', 'succeeded', '{}', 1.0);
        PRAGMA user_version=1;""")
    db.close()
    store = JobStore(path)
    record = store.get("old")
    assert record.state == "succeeded" and (record.batches, record.oom_retries) == (0, 0)
    store.update("old", batches=5, oom_retries=2)
    store.create("new", {}, "", None, 2.0)
    assert [r.id for r in store.recent()] == ["new", "old"] and store.get("old").oom_retries == 2
    store.close()
    assert JobStore(path).get("old").batches == 5


def test_server_jobs_record_their_batches_and_oom_retries(tmp_path):
    audio = (DATA / "ljspeech").glob("*.flac")
    with server(fake_transcriber(max_batch_size=4, oom_above_cost_s=40.0), tmp_path) as (url, service), \
            httpx.Client(base_url=url, timeout=60) as client:
        path = sorted(audio)[0]
        job = client.post("/v1/jobs", files={"file": (path.name, path.read_bytes())}).json()
        done = wait_for(lambda: (v := client.get(f"/v1/jobs/{job['id']}").json())["state"] == "succeeded" and v)
        assert done["batches"] >= 1 and done["wall_s"] > 0
        assert done["oom_retries"] == service.metrics.value("tingxie_oom_retries_total")
    record = JobStore(tmp_path / "jobs.db").get(job["id"])
    assert (record.batches, record.oom_retries) == (done["batches"], done["oom_retries"])


# -- the jobs glue and the page runner ---------------------------------------------------------

@contextlib.contextmanager
def page_jobs(tmp_path, max_duration_s=600.0):
    """(PageJobs, the options each page-runner model was loaded with), on fake backends."""
    loaded = []

    def load(options):
        loaded.append(options)
        return fake_transcriber(0.05)

    config = ServerConfig(db_path=tmp_path / "jobs.db", upload_dir=tmp_path / "uploads", max_duration_s=max_duration_s)
    _, service = build(fake_transcriber(0.05), config)
    runner = PageRunner(JobStore(tmp_path / "page.db"), load, max_duration_s=max_duration_s)
    service.stop_hooks.append(runner.stop)
    service.start()
    runner.start()
    try:
        yield PageJobs(service, runner, tmp_path / "page-uploads"), loaded
    finally:
        service.stop()


@pytest.fixture
def glue(tmp_path):
    with page_jobs(tmp_path) as made:
        yield made


def finished_view(jobs, job_id):
    return wait_for(lambda: (v := jobs.view(job_id)) and v["state"] in ("succeeded", "failed", "cancelled") and v)


def test_jobs_the_server_can_run_go_to_it_and_the_rest_to_the_page_runner(glue, tmp_path):
    jobs, loaded = glue
    on_server = jobs.submit(str(JFK), "jfk.flac", PageChoices("fake"))
    on_page = jobs.submit(str(JFK), "jfk.flac", PageChoices("whisper-base", None, 20.0, "1GiB"))
    assert jobs.service.store.get(on_server) and jobs.runner.store.get(on_page)
    server_view, page_view = finished_view(jobs, on_server), finished_view(jobs, on_page)
    assert (server_view["runs_on"], page_view["runs_on"]) == ("server", "page")
    assert server_view["state"] == page_view["state"] == "succeeded"
    assert page_view["model"] == "whisper-base" and page_view["batches"] >= 1 and page_view["wall_s"] > 0
    assert page_view["progress"]["audio_done_s"] == pytest.approx(11.0, abs=0.1)
    (options,) = loaded
    assert (options.model.name, options.batch.batch_size_s, options.batch.memory_budget) == ("whisper-base", 20.0,
                                                                                             "1GiB")
    # Both give the same fake transcript; the uploads are gone once the jobs end.
    assert jobs.transcript(on_server).text == jobs.transcript(on_page).text != ""
    assert not any((tmp_path / "page-uploads").iterdir()) and not any((tmp_path / "uploads").iterdir())
    assert [job_id for _, job_id in jobs.recent()] == [on_page, on_server]


def test_bad_files_and_limits_are_refused_before_a_job_in_plain_words(glue, tmp_path):
    jobs, _ = glue
    notes = tmp_path / "notes.mp3"
    notes.write_text("not audio " * 100)
    for choices in (PageChoices("fake"), PageChoices("other")):
        with pytest.raises(PageError, match="notes.mp3: not an audio file") as caught:
            jobs.submit(str(notes), "notes.mp3", choices)
        assert str(tmp_path) not in str(caught.value)
    with pytest.raises(PageError, match="could not be read"):
        jobs.submit(str(tmp_path / "gone.flac"), "gone.flac", PageChoices("fake"))
    assert jobs.recent() == []
    with page_jobs(tmp_path / "short", max_duration_s=5.0) as (short, _):
        for choices in (PageChoices("fake"), PageChoices("other")):
            with pytest.raises(PageError, match="11.0 s long; this server accepts at most 5 s"):
                short.submit(str(JFK), "jfk.flac", choices)


def test_a_page_job_that_fails_while_decoding_says_why(glue, tmp_path):
    jobs, _ = glue
    broken = tmp_path / "cut.flac"
    broken.write_bytes(JFK.read_bytes()[:100] + b"\0" * 5000)
    try:
        job_id = jobs.submit(str(broken), "cut.flac", PageChoices("other"))
    except PageError as error:  # refused by the probe: also plain words
        assert "cut.flac" in str(error)
        return
    view = finished_view(jobs, job_id)
    assert view["state"] == "failed" and "cut.flac" in view["error"]["message"]
    assert "Traceback" not in view["error"]["message"]


def test_a_page_job_can_be_cancelled_and_an_unfinished_one_resumes_at_start(tmp_path):
    store = JobStore(tmp_path / "page.db")
    upload = tmp_path / "a.upload"
    upload.write_bytes(JFK.read_bytes())
    store.create("left", {"filename": "jfk.flac", "model": "m"}, str(upload), 11.0, time.time())
    store.update("left", state="running")  # as a stop left it
    store.create("queued", {"filename": "jfk.flac", "model": "m"}, str(tmp_path / "b.upload"), 11.0, time.time())
    runner = PageRunner(store, lambda options: fake_transcriber(0.05))
    runner.cancel("queued")  # before the runner starts: never runs
    runner.start()
    try:
        assert wait_for(lambda: store.get("left").state == "succeeded")
        assert store.get("queued").state == "cancelled"
        assert runner.transcript("left").text and not upload.exists()
    finally:
        runner.stop()


# -- the command line and the mount ------------------------------------------------------------

def test_ui_and_serve_share_their_options():
    parser = build_parser()
    ui = parser.parse_args(["ui", "-m", "whisper-tiny.en", "--port", "7000", "--bench-results", "b.json"])
    serve = parser.parse_args(["serve", "--no-ui"])
    assert (ui.command, ui.model, ui.port, ui.bench_results) == ("ui", "whisper-tiny.en", 7000, "b.json")
    assert serve.no_ui and serve.bench_results is None


def test_the_page_is_mounted_at_ui_and_the_root_leads_to_it(tmp_path):
    with server(fake_transcriber(), tmp_path, mount=page_mount(root_redirect=True)) as (url, service), \
            httpx.Client(base_url=url, timeout=30) as client:
        root = client.get("/")
        assert root.status_code in (302, 307) and root.headers["location"] == "/ui/"
        page = client.get("/ui/")
        assert page.status_code == 200 and "<html" in page.text
        config = client.get("/ui/config").json()
        assert config["title"] == "tingxie" and '"Download srt"' in json.dumps(config, ensure_ascii=False)
        assert client.get("/healthz").json()["status"] == "ok"
    assert (tmp_path / "jobs-page.db").exists()  # the page runner's own store, beside the server's


def test_with_api_keys_the_page_is_behind_the_same_check(tmp_path):
    with server(fake_transcriber(), tmp_path, mount=page_mount(), api_keys=("k",)) as (url, _), \
            httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/ui/").status_code == 401
        assert client.get("/ui/", headers={"Authorization": "Bearer k"}).status_code == 200


def test_the_pages_prompt_temperature_and_word_timestamps_are_checked_and_reach_the_job(glue):
    """The page's decode choices: parsed with the engine's own checks; a job the server's model
    cannot decode with them (the fake backend decodes only as loaded) runs on the page runner,
    whose model decodes with them; the server job's options carry them as the API's fields."""
    from tingxie.ui.jobs import _request

    choices = PageChoices.parse("m", "auto", "auto", "", prompt="  President Kennedy. ", temperature=0.4,
                                word_timestamps=True)
    assert (choices.prompt, choices.temperature, choices.word_timestamps) == ("President Kennedy.", 0.4, True)
    assert PageChoices.parse("m", "auto", "auto", "", prompt=" ", temperature=0.0) == PageChoices("m")
    with pytest.raises(PageError, match="temperature must be numbers between 0 and 1") as caught:
        PageChoices.parse("m", "auto", "auto", "", temperature=1.5)
    assert "--" not in str(caught.value)
    request = _request(choices)
    assert (request.prompt, request.temperature, request.timestamp_granularities) == (
        "President Kennedy.", 0.4, ("segment", "word"))
    assert _request(PageChoices("m")).timestamp_granularities == ()

    jobs, loaded = glue
    plain = jobs.submit(str(JFK), "jfk.flac", PageChoices("fake"))
    asked = jobs.submit(str(JFK), "jfk.flac", dataclasses.replace(choices, model="fake"))
    assert jobs.service.store.get(plain) and jobs.runner.store.get(asked)  # the fake server cannot take a prompt
    assert finished_view(jobs, asked)["state"] == "succeeded"
    (options,) = loaded
    assert (options.decode.initial_prompt, options.decode.temperature, options.decode.timestamps) == (
        "President Kennedy.", (0.4,), True)
    assert jobs.transcript(asked).text
