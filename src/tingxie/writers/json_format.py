"""JSON output: the text, every segment with times, and the run's figures."""

from __future__ import annotations

import bisect
import dataclasses
import json

from tingxie.segments import RunStats, TextSegment, Transcript
from tingxie.writers.cues import cue_span


def to_dict(transcript: Transcript) -> dict:
    return {
        "source": transcript.source,
        "model": transcript.model,
        "language": transcript.language,
        "text": transcript.text,
        "segments": [_segment(i, s, words) for i, (s, words) in
                     enumerate(zip(transcript.segments, words_by_segment(transcript)))],
        "stats": _stats(transcript.stats),
    }


def render(transcript: Transcript) -> str:
    return json.dumps(to_dict(transcript), ensure_ascii=False, indent=2) + "\n"


def _segment(index: int, segment: TextSegment, words: list[TextSegment]) -> dict:
    # Same clamped, millisecond-rounded times as the subtitle formats, so outputs agree.
    start, end = cue_span(segment)
    record = {"id": index, "start": start / 1000, "end": end / 1000, "text": segment.text.strip()}
    if segment.speaker is not None:  # --diarize
        record["speaker"] = segment.speaker
    if segment.scores is not None:  # how sure the decoder was of its window (Whisper)
        record |= dataclasses.asdict(segment.scores)
    if words:
        record["words"] = [word_record(w) for w in words]
    return record


def word_record(word: TextSegment) -> dict:
    record = {"word": word.text, "start": word.start, "end": word.end}
    if word.probability is not None:
        record["probability"] = word.probability
    if word.speaker is not None:
        record["speaker"] = word.speaker
    return record


def words_by_segment(transcript: Transcript) -> list[list[TextSegment]]:
    """Each segment's words: those from its start until the next segment's (segments are cut
    from the words, in time order); empty lists where the backend aligns no words."""
    out: list[list[TextSegment]] = [[] for _ in transcript.segments]
    starts = [s.start for s in transcript.segments]
    for word in transcript.words:
        at = bisect.bisect_right(starts, word.start) - 1
        if at >= 0:
            out[at].append(word)
    return out


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
        "budget_shrinks": stats.budget_shrinks,
        "lowest_batch_memory_bytes": stats.lowest_batch_memory_bytes,
    }
