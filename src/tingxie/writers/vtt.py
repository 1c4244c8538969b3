"""WebVTT (.vtt) output."""

from __future__ import annotations

from tingxie.segments import TextSegment, Transcript
from tingxie.writers.cues import clock, cue_span, cue_text, has_text


def header() -> str:
    return "WEBVTT\n\n"


def format_cue(segment: TextSegment) -> str:
    """One cue with its trailing blank line; callers skip segments without text."""
    start, end = cue_span(segment)
    text = _escape(cue_text(segment.text))
    if segment.speaker is not None:  # a voice span: WebVTT's own way to name who speaks
        text = f"<v {_escape(segment.speaker)}>{text}"
    return f"{clock(start, '.')} --> {clock(end, '.')}\n{text}\n\n"


def render(transcript: Transcript) -> str:
    return header() + "".join(format_cue(s) for s in transcript.segments if has_text(s))


def _escape(text: str) -> str:
    # Cue text is markup: a bare "<" or "&" would be read as a tag or entity,
    # and escaping ">" also keeps a literal "-->" from looking like a timing line.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
