"""The web page's speakers (issue 17): the choices, the transcript view, and a diarized page job on
the server's scheduler and on the page runner (fake text, the real speaker stage on real audio)."""

from __future__ import annotations

import contextlib

import pytest

from test_server_helpers import DATA, SlowFakeBackend, fake_transcriber, wait_for
from tingxie.engine.pipeline import Transcriber
from tingxie.segments import TextSegment, Transcript
from tingxie.server.config import ServerConfig
from tingxie.server.runner import build
from tingxie.server.store import JobStore
from tingxie.ui.jobs import PageChoices, PageError, PageJobs
from tingxie.ui.page_runner import PageRunner, transcribe_options
from tingxie.ui.view import timed_text

JFK = DATA / "jfk.flac"


def test_the_transcript_view_puts_the_speaker_before_each_line():
    labelled = Transcript(source="a", model="m", language="en", segments=[
        TextSegment(0.0, 2.5, " Ask not", speaker="Speaker 1"), TextSegment(2.5, 4.0, " Printing", speaker="Speaker 2")])
    assert timed_text(labelled).splitlines() == ["[00:00:00.000 → 00:00:02.500]  Speaker 1: Ask not",
                                                 "[00:00:02.500 → 00:00:04.000]  Speaker 2: Printing"]
    plain = Transcript(source="a", model="m", language="en", segments=[TextSegment(0.0, 2.5, " Ask not")])
    assert timed_text(plain) == "[00:00:00.000 → 00:00:02.500]  Ask not"


def test_speaker_choices_are_checked_in_plain_words():
    assert PageChoices.parse("fake", "auto", "auto", "", True, 2) == PageChoices("fake", diarize=True, speakers=2)
    assert PageChoices.parse("fake", "auto", "auto", "", True, 0).speakers is None  # 0: found from the audio
    assert PageChoices.parse("fake", "auto", "auto", "", False, 3) == PageChoices("fake")  # no labels: no count
    with pytest.raises(PageError, match="speakers must be between 1 and"):
        PageChoices.parse("fake", "auto", "auto", "", True, 99)
    with pytest.raises(PageError, match="whole number, not 2.5"):
        PageChoices.parse("fake", "auto", "auto", "", True, 2.5)
    options = transcribe_options({"model": "other", "diarize": True, "speakers": 2})
    assert (options.diarize.enabled, options.diarize.speakers) == (True, 2)
    assert not transcribe_options({"model": "other"}).diarize.enabled


@contextlib.contextmanager
def page_jobs(tmp_path):
    """PageJobs on fake text: the server's scheduler and a page runner whose models diarize as asked."""
    config = ServerConfig(db_path=tmp_path / "jobs.db", upload_dir=tmp_path / "uploads")
    _, service = build(fake_transcriber(0.05), config)
    runner = PageRunner(JobStore(tmp_path / "page.db"), lambda options: Transcriber(options, backend=SlowFakeBackend()))
    service.stop_hooks.append(runner.stop)
    service.start()
    runner.start()
    try:
        yield PageJobs(service, runner, tmp_path / "page-uploads")
    finally:
        service.stop()


@pytest.mark.parametrize("model", ["fake", "other"])  # the server's scheduler, the page runner
def test_a_diarized_page_job_shows_its_speaker(tmp_path, model):
    with page_jobs(tmp_path) as jobs:
        labelled = jobs.submit(str(JFK), "jfk.flac", PageChoices(model, diarize=True))
        plain = jobs.submit(str(JFK), "jfk.flac", PageChoices(model))
        # the page shows a transcript once the job's final row is written (the live view may say done first)
        shown, unlabelled = (wait_for(lambda: jobs.transcript(job_id), timeout_s=120) for job_id in (labelled, plain))
        assert jobs.view(labelled)["runs_on"] == ("server" if model == "fake" else "page")
    assert shown.segments and {segment.speaker for segment in shown.segments} == {"Speaker 1"}  # one voice
    assert all(line.split("]  ", 1)[1].startswith("Speaker 1: ") for line in timed_text(shown).splitlines())
    assert all(segment.speaker is None for segment in unlabelled.segments) and "Speaker" not in timed_text(unlabelled)
    assert shown.text == unlabelled.text
