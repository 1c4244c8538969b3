"""Speakers from the server (issue 17): diarized_json and its stream events parsed by the official
openai client, jobs that keep their speakers across a restart, bad speaker fields as OpenAI's 4xx,
and nothing changed without diarization. whisper-tiny.en on two real voices (JFK, the LJSpeech
reader), the clip tests/test_diarize_audio.py builds.
"""

from __future__ import annotations

import json
import shutil
import sqlite3

import httpx
import numpy as np
import openai  # the dev extra: missing fails, never skips
import pytest
from openai.types.audio import TranscriptionDiarized, TranscriptionTextSegmentEvent

from long_audio import write_flac
from test_server_helpers import server, wait_for
from tingxie.audio.decode import decode_audio
from tingxie.engine.pipeline import Transcriber
from tingxie.options import DiarizeOptions, ModelOptions, TranscribeOptions
from tingxie.server.store import JobStore
from tingxie.server.work import RequestOptions

GAP_S = 0.6


@pytest.fixture(scope="module")
def conversation(data_dir, tmp_path_factory):
    """JFK (11 s), a short pause, the LJSpeech reader (21 s): (path, where the first voice ends).
    (tests/test_diarize_audio.py's clip adds 5 s of JFK after the reader; tiny.en gives that
    tail no text, so an answer's segments could not show the second change.)"""
    jfk = decode_audio(str(data_dir / "jfk.flac"))
    lj = np.concatenate([decode_audio(str(data_dir / "ljspeech" / f"LJ001-000{i}.flac")) for i in (1, 2, 3)])
    gap = np.zeros(int(GAP_S * 16000), dtype=np.float32)
    audio = np.concatenate([jfk, gap, lj])
    return write_flac(tmp_path_factory.mktemp("diarize") / "two_voices.flac", audio), len(jfk) / 16000


def create(client, path, **kwargs):
    with open(path, "rb") as audio:
        return client.audio.transcriptions.create(file=audio, model="whisper-1", **kwargs)


@pytest.fixture(scope="module")
def diarized(client, conversation):
    return create(client, conversation[0], response_format="diarized_json")


def turns(segments) -> list[tuple[str, float, float]]:
    """(speaker, start, end) of each run of consecutive segments with one speaker."""
    out: list[tuple[str, float, float]] = []
    for segment in segments:
        if out and out[-1][0] == segment.speaker:
            out[-1] = (segment.speaker, out[-1][1], segment.end)
        else:
            out.append((segment.speaker, segment.start, segment.end))
    return out


def assert_turns_in_place(segments, change: float) -> None:
    found = turns(segments)
    assert [speaker for speaker, _, _ in found] == ["Speaker 1", "Speaker 2"], found
    (_, _, end), (_, start, _) = found
    # the change lies within 0.5 s of the pause between the voices
    assert change - 0.5 <= end <= change + GAP_S + 0.5 and change - 0.5 <= start <= change + GAP_S + 0.5, found


def test_diarized_json_parses_with_the_openai_client_and_finds_both_voices(diarized, conversation):
    assert isinstance(diarized, TranscriptionDiarized)
    assert diarized.task == "transcribe" and diarized.usage.type == "duration"
    assert diarized.duration == pytest.approx(conversation[1] + GAP_S + 21.2, abs=0.2)
    assert all(s.type == "transcript.text.segment" and s.text for s in diarized.segments)
    assert len({s.id for s in diarized.segments}) == len(diarized.segments)
    assert [s.start for s in diarized.segments] == sorted(s.start for s in diarized.segments)
    assert_turns_in_place(diarized.segments, conversation[1])
    assert "fellow Americans" in diarized.segments[0].text


def test_the_server_labels_as_the_cli_does(diarized, conversation, tiny_transcriber):
    """The server's stage, fed per request beside cross-request batches, equals the pipeline's."""
    options = TranscribeOptions(model=ModelOptions(name="whisper-tiny.en"), diarize=DiarizeOptions(enabled=True))
    cli = Transcriber(options, backend=tiny_transcriber.backend).transcribe(str(conversation[0]))
    assert [(s.speaker, s.text.strip(), round(s.start, 3), round(s.end, 3)) for s in cli.segments if s.text.strip()] \
        == [(s.speaker, s.text, s.start, s.end) for s in diarized.segments]


def test_streamed_segment_events_parse_and_match_the_whole_answer(client, conversation, diarized):
    events = list(create(client, conversation[0], response_format="diarized_json", stream=True))
    types = [event.type for event in events]
    # the text as it is recognised, then the segments once the speakers are known, then done
    first_segment = types.index("transcript.text.segment")
    assert set(types[:first_segment]) == {"transcript.text.delta"}
    assert set(types[first_segment:-1]) == {"transcript.text.segment"} and types[-1] == "transcript.text.done"
    segments = [event for event in events if isinstance(event, TranscriptionTextSegmentEvent)]
    assert [(s.id, s.speaker, s.start, s.end, s.text) for s in segments] == \
        [(s.id, s.speaker, s.start, s.end, s.text) for s in diarized.segments]
    assert "".join(event.delta for event in events[:first_segment]) == events[-1].text == diarized.text


def test_speaker_counts_are_honoured(client, conversation):
    one = create(client, conversation[0], response_format="diarized_json", extra_body={"speakers": "1"})
    assert {s.speaker for s in one.segments} == {"Speaker 1"}
    bounded = create(client, conversation[0], response_format="diarized_json",
                     extra_body={"min_speakers": "2", "max_speakers": "3"})
    assert {s.speaker for s in bounded.segments} == {"Speaker 1", "Speaker 2"}


def test_other_formats_show_speakers_when_asked(client, conversation, diarized):
    verbose = create(client, conversation[0], response_format="verbose_json",
                     timestamp_granularities=["word", "segment"], extra_body={"diarize": "true"})
    assert {word.speaker for word in verbose.words} == {"Speaker 1", "Speaker 2"}
    assert [s.speaker for s in verbose.segments] == [s.speaker for s in diarized.segments]
    subtitles = create(client, conversation[0], response_format="srt", extra_body={"diarize": "true"})
    assert subtitles.startswith("1\n") and "Speaker 2: " in subtitles


def test_without_diarization_nothing_changes(client, conversation, diarized, tiny_server):
    plain = create(client, conversation[0], response_format="verbose_json", timestamp_granularities=["word", "segment"])
    assert plain.text == diarized.text
    assert all(getattr(s, "speaker", None) is None for s in plain.segments)
    assert all(getattr(w, "speaker", None) is None for w in plain.words)
    assert "Speaker" not in create(client, conversation[0], response_format="srt")
    # a diarized request decodes as any other, so the scheduler batches it with the others
    service = tiny_server[1]
    assert service.check_options(RequestOptions(response_format="diarized_json", diarize=True)) == \
        service.check_options(RequestOptions())


BAD_FIELDS = [
    ({"response_format": "diarized_json", "speakers": "0"}, "speakers", "speakers must be between 1 and"),
    ({"response_format": "diarized_json", "speakers": "two"}, "speakers", "speakers must be a whole number, not 'two'"),
    ({"response_format": "diarized_json", "min_speakers": "3", "max_speakers": "2"}, "min_speakers",
     "min_speakers 3 must not exceed max_speakers 2"),
    ({"response_format": "diarized_json", "speakers": "2", "max_speakers": "3"}, "speakers",
     "speakers 2 already fixes the count"),
    ({"response_format": "json", "speakers": "2"}, "speakers", "speakers 2 needs diarize=true"),
    ({"response_format": "diarized_json", "known_speaker_names[]": "agent"}, "known_speaker_names[]",
     "naming speakers from reference clips is not available"),
    ({"response_format": "diarized_json", "diarize": "maybe"}, "diarize", "diarize must be true or false"),
]


@pytest.mark.parametrize("fields, param, message", BAD_FIELDS)
def test_bad_speaker_fields_are_400_in_openai_shape(tiny_server, data_dir, fields, param, message):
    for route in ("/v1/audio/transcriptions", "/v1/jobs"):
        response = httpx.post(tiny_server[0] + route, data={"model": "whisper-1", **fields},
                              files={"file": ("jfk.flac", (data_dir / "jfk.flac").read_bytes())}, timeout=60)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param
        assert message in error["message"], error["message"]


def test_the_openai_client_sees_a_bad_count_as_a_bad_request(client, data_dir):
    with pytest.raises(openai.BadRequestError) as raised:
        create(client, data_dir / "jfk.flac", response_format="diarized_json", extra_body={"max_speakers": "99"})
    assert raised.value.body["param"] == "max_speakers" and "max_speakers must be between 1 and" in raised.value.message


def test_a_translation_is_not_diarized(tiny_server, data_dir):
    for fields, param in (({"response_format": "diarized_json"}, "response_format"), ({"diarize": "true"}, "diarize")):
        response = httpx.post(tiny_server[0] + "/v1/audio/translations", data={"model": "whisper-1", **fields},
                              files={"file": ("jfk.flac", (data_dir / "jfk.flac").read_bytes())}, timeout=60)
        assert response.status_code == 400 and response.json()["error"]["param"] == param, response.text


def test_a_diarized_job_keeps_its_speakers_after_a_restart(tiny_transcriber, tmp_path, conversation, diarized):
    with server(tiny_transcriber, tmp_path) as (url, _):
        with open(conversation[0], "rb") as audio:
            created = httpx.post(url + "/v1/jobs", files={"file": ("talk.flac", audio)}, timeout=60,
                                 data={"response_format": "diarized_json", "min_speakers": "2"})
        assert created.status_code == 202, created.text
        job = created.json()["id"]
        wait_for(lambda: httpx.get(f"{url}/v1/jobs/{job}").json()["state"] == "succeeded", timeout_s=300, interval_s=0.2)
        before = httpx.get(f"{url}/v1/jobs/{job}/result").json()
        plain = httpx.post(url + "/v1/jobs", files={"file": ("jfk.flac", (conversation[0]).read_bytes())},
                           data={"response_format": "json"}).json()["id"]
        wait_for(lambda: httpx.get(f"{url}/v1/jobs/{plain}").json()["state"] == "succeeded", timeout_s=300,
                 interval_s=0.2)
    with server(tiny_transcriber, tmp_path) as (url, _):  # a new process's view: only the database is left
        after = httpx.get(f"{url}/v1/jobs/{job}/result").json()
        subtitles = httpx.get(f"{url}/v1/jobs/{job}/result", params={"format": "srt"}).text
        not_diarized = httpx.get(f"{url}/v1/jobs/{plain}/result", params={"format": "diarized_json"})
    assert after == before
    assert [(s["speaker"], s["text"]) for s in after["segments"]] == [(s.speaker, s.text) for s in diarized.segments]
    assert "Speaker 1: " in subtitles and "Speaker 2: " in subtitles
    assert not_diarized.status_code == 400 and not_diarized.json()["error"]["param"] == "format"


def test_a_resumed_diarized_job_finds_the_same_speakers(tiny_transcriber, tmp_path, conversation, diarized):
    """A job cut off after its first segments: the restarted server embeds all its audio again
    (the stored segments' too) and labels the whole transcript as an uninterrupted run does."""
    with server(tiny_transcriber, tmp_path) as (url, _):
        with open(conversation[0], "rb") as audio:
            job = httpx.post(url + "/v1/jobs", files={"file": ("talk.flac", audio)}, timeout=60,
                             data={"response_format": "diarized_json"}).json()["id"]
        wait_for(lambda: httpx.get(f"{url}/v1/jobs/{job}").json()["state"] == "succeeded", timeout_s=300, interval_s=0.2)
    db = sqlite3.connect(tmp_path / "jobs.db")
    stored = db.execute("SELECT COUNT(*) FROM segments WHERE job_id = ?", (job,)).fetchone()[0]
    uninterrupted = json.loads(db.execute("SELECT speaker_turns FROM jobs WHERE id = ?", (job,)).fetchone()[0])
    assert stored >= 2 and len(uninterrupted) >= 2
    with db:  # as if killed halfway: running, its later segments and its turns not yet written, its upload kept
        upload = tmp_path / "uploads" / f"{job}.upload"
        shutil.copyfile(conversation[0], upload)
        db.execute("DELETE FROM segments WHERE job_id = ? AND idx >= ?", (job, stored // 2))
        db.execute("UPDATE jobs SET state = 'running', finished_at = NULL, speaker_turns = NULL, upload_path = ? "
                   "WHERE id = ?", (str(upload), job))
    db.close()
    with server(tiny_transcriber, tmp_path) as (url, _):
        wait_for(lambda: httpx.get(f"{url}/v1/jobs/{job}").json()["state"] == "succeeded", timeout_s=300, interval_s=0.2)
        resumed = httpx.get(f"{url}/v1/jobs/{job}/result").json()
    # the same voice vectors, so the same speaker turns to the sample; and the answer's turns
    # (a re-decoded window's text may be cut into pieces differently: compared as turns)
    assert JobStore(tmp_path / "jobs.db").get(job).speaker_turns == uninterrupted
    segments = [TranscriptionDiarized.model_validate(resumed).segments, diarized.segments]
    assert [speaker for speaker, _, _ in turns(segments[0])] == [speaker for speaker, _, _ in turns(segments[1])]
    assert_turns_in_place(segments[0], conversation[1])
