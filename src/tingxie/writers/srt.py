"""SubRip (.srt) output."""

from __future__ import annotations

from tingxie.segments import TextSegment, Transcript
from tingxie.writers.cues import clock, cue_span, cue_text, has_text


def format_cue(index: int, segment: TextSegment) -> str:
    """One numbered cue with its trailing blank line; callers skip segments without text."""
    start, end = cue_span(segment)
    text = cue_text(segment.text)
    if segment.speaker is not None:  # SubRip has no speaker field: the name leads the text
        text = f"{segment.speaker}: {text}"
    return f"{index}\n{clock(start, ',')} --> {clock(end, ',')}\n{text}\n\n"


def render(transcript: Transcript) -> str:
    cues = (s for s in transcript.segments if has_text(s))
    return "".join(format_cue(i, s) for i, s in enumerate(cues, start=1))
