"""The web page end to end in headless Chromium (Debian's), driven by Playwright.

The server (with the page mounted, whisper-tiny.en) runs on a free loopback port; the test
uploads jfk.flac, starts, waits for the transcript, checks its text and the downloaded srt,
reopens the page by its job address, sees a corrupt file refused in plain words, and reads a
`tingxie bench` JSON into the Benchmarks tab. A screenshot of the finished page is saved under
$TINGXIE_TEST_ARTIFACTS (default: test-artifacts/, git-ignored).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import pytest
import srt
from playwright.sync_api import expect, sync_playwright

from tingxie.benchmark.evaluation import normalize_english
from tingxie.server.config import ServerConfig
from tingxie.server.runner import running
from tingxie.ui.mount import page_mount

pytestmark = pytest.mark.slow  # a real browser on the page, with a real model behind it

DATA = Path(__file__).parent / "data"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TINGXIE_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))
# Without the background-networking flags Chromium's own connections fail on a closed network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 # A microphone that plays a test tone, allowed without a prompt.
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
TIMESTAMP = re.compile(r"^\[[\d:.]+ → [\d:.]+\]\s*", re.MULTILINE)
BENCH = {
    "command": "tingxie bench --audio jfk.flac --runs 3", "model": "whisper-tiny.en", "audio": "jfk.flac",
    "audio_s": 11.0, "device": "cpu", "runs": 3, "future_key": {"ignored": True},
    "rows": [
        {"name": "tingxie auto", "kind": "tingxie", "batch_size_s": None, "budget_bytes": 2**31, "wall_s": 0.9,
         "speed": 12.2, "peak_rss_bytes": 400 * 2**20, "batches": 1, "padding_waste": 0.1, "oom_retries": 0,
         "wer": 0.0, "extra": "x"},
        {"name": "fw batched 8", "kind": "fw-batched", "batch_size_s": None, "budget_bytes": None, "wall_s": 1.5,
         "speed": 7.3, "peak_rss_bytes": 650 * 2**20, "batches": None, "padding_waste": None, "oom_retries": None,
         "wer": 0.02},
    ],
}


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_transcriber):
    folder = tmp_path_factory.mktemp("ui")
    bench = folder / "bench.json"
    bench.write_text(json.dumps(BENCH))
    config = ServerConfig(db_path=folder / "jobs.db", upload_dir=folder / "uploads", max_duration_s=3600)
    with running(tiny_transcriber, config, mount=page_mount(bench)) as (url, service):
        yield url, folder


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (.ci/run installs it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1100},
                                  permissions=["microphone"])
    page = context.new_page()
    yield page
    context.close()


def upload_and_start(page, path: Path) -> None:
    page.locator("#upload-file input[type=file]").set_input_files(str(path))
    # Uploaded: the file's download link (its name, as shown, may wrap at the dot).
    expect(page.locator(f'#upload-file a[href$="/{path.name}"]')).to_be_visible(timeout=30_000)
    page.locator("#start").click()


def test_jfk_end_to_end_with_download_reload_and_screenshot(site, page, data_dir):
    url, _ = site
    page.goto(f"{url}/ui/")
    upload_and_start(page, data_dir / "jfk.flac")
    status = page.locator("#status")
    expect(status).to_contain_text("Done", timeout=120_000)
    expect(status).to_contain_text("11.0 s of 11.0 s")

    transcript = page.locator("#transcript textarea")
    expect(transcript).not_to_have_value("", timeout=30_000)
    lines = transcript.input_value().splitlines()
    assert lines and all(TIMESTAMP.match(line) for line in lines), lines
    reference = normalize_english((data_dir / "jfk.txt").read_text())
    assert normalize_english(TIMESTAMP.sub("", "\n".join(lines))) == reference

    figures = page.locator("#figures")
    for figure in ("audio length", "wall time", "speed", "peak memory", "batches", "OOM retries"):
        expect(figures).to_contain_text(figure)
    expect(figures).to_contain_text("11.0 s")
    # The peak is the serving process's (in this test, pytest's own), so MiB or GiB.
    expect(figures).to_contain_text(re.compile(r"peak memory\s+[0-9.]+ (MiB|GiB)"))

    job_id = page.locator("#job-id textarea, #job-id input").first.input_value()
    assert re.fullmatch(r"[0-9a-f]{32}", job_id)
    assert f"job={job_id}" in page.url

    with page.expect_download() as download:
        page.locator("#download-srt").click()
    cues = list(srt.parse(Path(download.value.path()).read_text(encoding="utf-8")))
    assert normalize_english(" ".join(cue.content for cue in cues)) == reference
    assert cues[0].start.total_seconds() >= 0 and cues[-1].end.total_seconds() <= 11.1
    assert all(a.end <= b.start for a, b in zip(cues, cues[1:]))

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-finished.png"), full_page=True)

    # Closing and reopening the page by its address shows the same job, done.
    reopened = page.context.new_page()
    page.close()
    reopened.goto(f"{url}/ui/?job={job_id}")
    expect(reopened.locator("#status")).to_contain_text("Done", timeout=30_000)
    expect(reopened.locator("#transcript textarea")).not_to_have_value("", timeout=30_000)
    assert normalize_english(TIMESTAMP.sub("", reopened.locator("#transcript textarea").input_value())) == reference


@pytest.mark.parametrize("name, make, words", [
    # A FLAC header and then noise: refused by the probe or while decoding, in plain words.
    ("broken.flac", lambda jfk: jfk[:100] + random.Random(6).randbytes(3000), "corrupt"),
    # Not audio at all.
    ("notes.mp3", lambda jfk: b"these are meeting notes, not audio\n" * 50, "not an audio file"),
])
def test_bad_files_show_a_plain_error(site, page, data_dir, tmp_path, name, make, words):
    url, _ = site
    bad = tmp_path / name
    bad.write_bytes(make((data_dir / "jfk.flac").read_bytes()))
    page.goto(f"{url}/ui/")
    upload_and_start(page, bad)
    status = page.locator("#status")
    expect(status).to_contain_text(re.compile("Error|Failed"), timeout=60_000)
    text = status.inner_text()
    assert name in text and "Traceback" not in text and str(tmp_path) not in text and ".upload" not in text, text
    assert words in text, text


def test_benchmarks_tab_shows_the_table_and_the_plot(site, page, tmp_path):
    url, _ = site
    page.goto(f"{url}/ui/")
    page.get_by_role("tab", name="Benchmarks").click()
    expect(page.locator("#bench-status")).to_contain_text("whisper-tiny.en", timeout=30_000)
    table = page.locator("#bench-table")
    for cell in ("tingxie auto", "fw batched 8", "12.2", "650"):
        expect(table).to_contain_text(cell)
    expect(page.locator("#bench-plot canvas, #bench-plot svg").first).to_be_visible(timeout=30_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-benchmarks.png"), full_page=True)

    # An uploaded file replaces it; one that is not bench output is refused in plain words.
    bad, other = tmp_path / "notes.json", tmp_path / "other.json"
    bad.write_text("{not json")
    other.write_text(json.dumps(BENCH | {"model": "whisper-base", "rows": BENCH["rows"][:1]}))
    upload = page.locator("#bench-file input[type=file]")
    upload.set_input_files(str(bad))
    expect(page.locator("#bench-status")).to_contain_text("this is not a JSON file", timeout=30_000)
    page.locator("#bench-file").get_by_role("button", name="Clear").click()
    upload.set_input_files(str(other))
    expect(page.locator("#bench-status")).to_contain_text("whisper-base", timeout=30_000)
    expect(table).not_to_contain_text("fw batched 8")


def test_a_recording_with_its_own_batching_runs_on_the_page_runner(site, page):
    url, _ = site
    page.goto(f"{url}/ui/")
    recorder = page.locator("#record")
    recorder.get_by_role("button", name="Record").click()
    page.wait_for_timeout(2500)
    recorder.get_by_role("button", name="Stop").click()
    page.locator("#batching textarea, #batching input").first.fill("30")
    page.locator("#start").click()
    status = page.locator("#status")
    expect(status).to_contain_text("Done", timeout=120_000)
    expect(status).to_contain_text("recording.wav")
    figures = page.locator("#figures")
    expect(figures).to_contain_text("the page's runner")
    text = figures.inner_text()
    seconds = float(re.search(r"audio length\s+([\d.]+) s", text).group(1))
    assert 1.5 < seconds < 4.0, text
