"""JSON output: the text, every segment with times, and the run's figures."""

from __future__ import annotations

import json

from tingxie.segments import RunStats, TextSegment, Transcript
from tingxie.writers.cues import cue_span


def to_dict(transcript: Transcript) -> dict:
    return {
        "source": transcript.source,
        "model": transcript.model,
        "language": transcript.language,
        "text": transcript.text,
        "segments": [_segment(i, s) for i, s in enumerate(transcript.segments)],
        "stats": _stats(transcript.stats),
    }


def render(transcript: Transcript) -> str:
    return json.dumps(to_dict(transcript), ensure_ascii=False, indent=2) + "\n"


def _segment(index: int, segment: TextSegment) -> dict:
    # Same clamped, millisecond-rounded times as the subtitle formats, so outputs agree.
    start, end = cue_span(segment)
    return {"id": index, "start": start / 1000, "end": end / 1000, "text": segment.text.strip()}


def _stats(stats: RunStats) -> dict:
    return {
        "audio_duration_s": round(stats.audio_seconds, 3),
        "wall_time_s": round(stats.wall_seconds, 3),
        "speed": round(stats.speed, 3),
        "peak_rss_bytes": stats.peak_rss_bytes,
        "batches": stats.batches,
        "segments": stats.segments,
        "oom_retries": stats.oom_retries,
        "padding_waste": round(stats.padding_waste, 4),
    }
