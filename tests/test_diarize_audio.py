"""Diarization on real voices: JFK and the LJSpeech reader, through the whole pipeline (tiny.en)."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
import srt
import webvtt

from long_audio import write_flac
from tingxie.audio.decode import decode_audio, decode_chunks
from tingxie.engine.streaming import StreamState
from tingxie.diarize.stage import Diarizer, load_encoder
from tingxie.engine.pipeline import Transcriber
from tingxie.options import DiarizeOptions, ModelOptions, TranscribeOptions
from tingxie.writers import render

GAP_S = 0.6


@pytest.fixture(scope="module")
def conversation(data_dir, tmp_path_factory):
    """JFK (11 s), the LJSpeech reader (21 s), JFK again (5 s), with short pauses: two voices."""
    jfk = decode_audio(str(data_dir / "jfk.flac"))
    lj = np.concatenate([decode_audio(str(data_dir / "ljspeech" / f"LJ001-000{i}.flac")) for i in (1, 2, 3)])
    gap = np.zeros(int(GAP_S * 16000), dtype=np.float32)
    audio = np.concatenate([jfk, gap, lj, gap, jfk[:5 * 16000]])
    first_end = len(jfk) / 16000
    second_end = first_end + GAP_S + len(lj) / 16000
    path = write_flac(tmp_path_factory.mktemp("diarize") / "two_voices.flac", audio)
    return path, first_end, second_end


def _transcriber(tiny_transcriber, diarize: DiarizeOptions) -> Transcriber:
    options = TranscribeOptions(model=ModelOptions(name="whisper-tiny.en"), diarize=diarize)
    return Transcriber(options, backend=tiny_transcriber.backend)


@pytest.fixture(scope="module")
def diarized(tiny_transcriber, conversation):
    return _transcriber(tiny_transcriber, DiarizeOptions(enabled=True)).transcribe(str(conversation[0]))


def test_two_voices_are_found_with_the_turns_in_place(tiny_transcriber, conversation):
    path, first_end, second_end = conversation
    diarizer = Diarizer(load_encoder())
    for _ in diarizer.observe(tiny_transcriber.segments(decode_chunks(str(path)), StreamState())):
        pass  # the VAD's segments (packed windows for Whisper), embedded on their way
    timeline = []  # turns of one voice across its own pauses, joined
    for turn in diarizer.speaker_timeline().turns:
        if timeline and timeline[-1].speaker == turn.speaker:
            timeline[-1] = dataclasses.replace(timeline[-1], end=turn.end)
        else:
            timeline.append(turn)
    assert [turn.speaker for turn in timeline] == [0, 1, 0]
    # each change lies within 0.5 s of the pause between the voices
    assert first_end - 0.5 <= timeline[0].end and timeline[1].start <= first_end + GAP_S + 0.5
    assert second_end - 0.5 <= timeline[1].end and timeline[2].start <= second_end + GAP_S + 0.5


def test_the_transcript_names_each_voice(diarized, conversation):
    _, first_end, second_end = conversation
    speakers = [(s.speaker, s.start) for s in diarized.segments]
    assert {speaker for speaker, _ in speakers} == {"Speaker 1", "Speaker 2"}
    assert all(speaker == "Speaker 1" for speaker, start in speakers if start < first_end - 0.5)
    assert all(speaker == "Speaker 2" for speaker, start in speakers if first_end + 1 < start < second_end - 1)
    assert diarized.words and all(word.speaker in ("Speaker 1", "Speaker 2") for word in diarized.words)
    fellow = next(word for word in diarized.words if "fellow" in word.text)
    printing = next(word for word in diarized.words if "Printing" in word.text)
    assert (fellow.speaker, printing.speaker) == ("Speaker 1", "Speaker 2")


def test_the_formats_carry_speakers_and_parse(diarized):
    cues = list(srt.parse(render(diarized, "srt")))
    assert cues and all(cue.content.startswith(("Speaker 1: ", "Speaker 2: ")) for cue in cues)
    captions = webvtt.from_buffer(io.StringIO(render(diarized, "vtt"))).captions
    assert [c.voice for c in captions] == [s.speaker for s in diarized.segments if s.text.strip()]
    assert all(not c.text.startswith("<") for c in captions)
    document = json.loads(render(diarized, "json"))
    assert [s["speaker"] for s in document["segments"]] == [s.speaker for s in diarized.segments]
    assert all("speaker" in word for s in document["segments"] for word in s.get("words", []))
    lines = render(diarized, "txt").splitlines()
    assert lines[0].startswith("Speaker 1: And so my fellow Americans") and lines[1].startswith("Speaker 2: ")


@pytest.mark.slow
def test_a_resumed_run_finds_the_same_speakers(tiny_transcriber, conversation, diarized):
    transcriber = _transcriber(tiny_transcriber, DiarizeOptions(enabled=True))
    first = {}
    transcriber.transcribe(str(conversation[0]), on_window=lambda w: first.update({r.index: r for r in w.results}))
    done = sorted(first)[: max(1, len(first) // 2)]  # as if the run stopped halfway
    resumed = transcriber.transcribe(str(conversation[0]), recorded=lambda i: first.get(i) if i in done else None)
    assert [(s.text, s.speaker) for s in resumed.segments] == [(s.text, s.speaker) for s in diarized.segments]


@pytest.mark.slow
def test_speaker_count_given_is_honoured(tiny_transcriber, conversation):
    one = _transcriber(tiny_transcriber, DiarizeOptions(enabled=True, speakers=1)).transcribe(str(conversation[0]))
    assert {s.speaker for s in one.segments} == {"Speaker 1"}


def test_without_diarize_nothing_changes(tiny_transcriber, conversation, diarized):
    plain = _transcriber(tiny_transcriber, DiarizeOptions()).transcribe(str(conversation[0]))
    assert all(s.speaker is None for s in plain.segments) and all(w.speaker is None for w in plain.words)
    for fmt in ("txt", "srt", "vtt"):
        assert "Speaker" not in render(plain, fmt)
    assert '"speaker"' not in render(plain, "json")
    # the same text and words, only labelled (and cut at changes) when on
    assert plain.text == diarized.text
    unlabelled = [dataclasses.replace(w, speaker=None) for w in diarized.words]
    assert [(w.start, w.end, w.text) for w in unlabelled] == [(w.start, w.end, w.text) for w in plain.words]
