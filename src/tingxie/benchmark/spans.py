"""The speech spans both sides of a stage-equal comparison get: Silero's (tingxie's VAD), in whole ms.

The `funasr` case hands them to FunASR's own inference in place of its VAD model; a `tingxie`
case with given_spans runs them through Transcriber.transcribe_segments. Computed at load, so
the VAD's time is in neither side's run.
"""

from __future__ import annotations


def speech_spans_ms(audio) -> list[list[int]]:
    from tingxie.vad.detector import detect_speech

    return [[round(span.start * 1000), round(span.end * 1000)] for span in detect_speech(audio)]


def segments_from_spans(audio, spans_ms: list[list[int]]) -> list:
    """AudioSegments cut from 16 kHz audio at the given millisecond spans."""
    from tingxie import SAMPLE_RATE
    from tingxie.segments import AudioSegment

    per_ms = SAMPLE_RATE // 1000
    return [AudioSegment(i, start / 1000, end / 1000, audio[start * per_ms: end * per_ms])
            for i, (start, end) in enumerate(spans_ms)]
