"""Results in OpenAI's response formats: json, text, srt, vtt, verbose_json, diarized_json.

srt and vtt come from tingxie's own writers, so the server's subtitles are byte for byte the
CLI's. verbose_json fills what the backend reports: Whisper's segments carry their window's
average log-probability, no-speech probability, compression ratio and the temperature the text
was decoded at, and its words their probabilities; a backend without them reads 0.0.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zlib
from typing import Iterable

from tingxie.segments import RunStats, TextSegment, Transcript, majority_language
from tingxie.writers import render as render_file
from tingxie.writers.cues import cue_span
from tingxie.writers.json_format import word_record
from tingxie.server.speakers import diarized_segments
from tingxie.server.store import FinishedSegment

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
MEDIA_TYPES = {"json": "application/json", "verbose_json": "application/json", "diarized_json": "application/json",
               "text": "text/plain; charset=utf-8",
               "srt": "text/plain; charset=utf-8", "vtt": "text/vtt; charset=utf-8"}


def build_transcript(finished: Iterable[FinishedSegment], *, source: str, model: str, stats: RunStats) -> Transcript:
    """The transcript as the CLI builds it: pieces in time order, the most common language."""
    results = [f.result for f in sorted(finished, key=lambda f: f.index)]
    return Transcript(source=source, model=model, language=majority_language(results),
                      segments=[piece for r in results for piece in r.pieces], stats=stats)


def words_of(finished: Iterable[FinishedSegment]) -> list[TextSegment]:
    """The timed words of the segments, in time order (empty where the backend aligns none)."""
    return [word for f in sorted(finished, key=lambda f: f.index) for word in f.result.words]


def usage(duration_s: float) -> dict:
    """OpenAI's usage of a model billed by the audio's duration, whole seconds."""
    return {"type": "duration", "seconds": math.ceil(duration_s)}


def render(transcript: Transcript, fmt: str, *, duration_s: float, temperature: float, task: str = "transcribe",
           granularities: tuple[str, ...] = (), words: list[TextSegment] = (),
           logprobs: list[dict] | None = None) -> tuple[str, str]:
    """(body, media type) of a finished transcription in one of RESPONSE_FORMATS. verbose_json
    has its segments unless only word granularity was asked, and its words when it was."""
    if fmt == "json":
        body = json.dumps({"text": transcript.text, "usage": usage(duration_s)}
                          | ({"logprobs": logprobs} if logprobs is not None else {}), ensure_ascii=False)
    elif fmt == "text":
        body = transcript.text + "\n"
    elif fmt in ("srt", "vtt"):
        body = render_file(transcript, fmt)
    elif fmt == "verbose_json":
        verbose = _verbose(transcript, duration_s, temperature, task)
        if granularities == ("word",):
            del verbose["segments"]
        if "word" in granularities:
            # a diarized transcript's own words carry their speakers
            verbose["words"] = [word_record(w) for w in (transcript.words or words)]
        body = json.dumps(verbose | {"usage": usage(duration_s)}, ensure_ascii=False)
    elif fmt == "diarized_json":  # OpenAI's TranscriptionDiarized; the transcript is labelled (speakers.py)
        body = json.dumps({"task": "transcribe", "duration": round(duration_s, 3), "text": transcript.text,
                           "segments": diarized_segments(transcript), "usage": usage(duration_s)}, ensure_ascii=False)
    else:
        raise ValueError(f"unknown response format {fmt!r}")
    return body, MEDIA_TYPES[fmt]


def _verbose(transcript: Transcript, duration_s: float, temperature: float | tuple[float, ...], task: str) -> dict:
    # the server's temperatures (a fallback list) where a segment does not say which it took
    temperature = temperature[0] if isinstance(temperature, tuple) else temperature
    segments = []
    for i, piece in enumerate(transcript.segments):
        start, end = cue_span(piece)  # the same rounded times as the subtitles
        text = piece.text.strip()
        segments.append({
            "id": i, "seek": int(start / 10), "start": start / 1000, "end": end / 1000, "text": " " + text,
            "tokens": [], "temperature": temperature, "avg_logprob": 0.0,
            "compression_ratio": _compression_ratio(text), "no_speech_prob": 0.0,
        } | (dataclasses.asdict(piece.scores) if piece.scores is not None else {})
          | ({"speaker": piece.speaker} if piece.speaker is not None else {}))  # diarized: as the CLI's json
    return {"task": task, "language": transcript.language or "", "duration": round(duration_s, 3),
            "text": transcript.text, "segments": segments}


def _compression_ratio(text: str) -> float:
    """As Whisper computes it: raw bytes over zlib-compressed bytes (high means repetitive)."""
    data = text.encode("utf-8")
    return round(len(data) / len(zlib.compress(data)), 3) if data else 0.0
