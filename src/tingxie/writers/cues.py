"""Timestamps and text shared by the subtitle formats (SRT and WebVTT)."""

from __future__ import annotations

import math
import re

from tingxie.segments import TextSegment

_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def to_millis(seconds: float) -> int:
    """Seconds to whole milliseconds, rounding half up; negatives and NaN become 0."""
    if not math.isfinite(seconds) or seconds <= 0:
        return 0
    return int(math.floor(seconds * 1000 + 0.5))


def cue_span(segment: TextSegment) -> tuple[int, int]:
    """(start_ms, end_ms) of a segment, with the end never before the start."""
    start = to_millis(segment.start)
    return start, max(start, to_millis(segment.end))


def clock(millis: int, decimal_sep: str) -> str:
    """HH:MM:SS<sep>mmm; hours grow past two digits rather than wrap."""
    seconds, ms = divmod(millis, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{decimal_sep}{ms:03d}"


def cue_text(text: str) -> str:
    """Text on one line: a blank line inside a cue would end it early in both formats."""
    return _LINE_BREAKS.sub(" ", text.strip())


def has_text(segment: TextSegment) -> bool:
    """Whether a segment gets a cue at all; empty ones are skipped, not shown blank."""
    return bool(cue_text(segment.text))
