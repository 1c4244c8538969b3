"""Plain text output: one line per segment that has text."""

from __future__ import annotations

from tingxie.segments import TextSegment, Transcript, join_texts


def format_line(segment: TextSegment) -> str:
    """The segment's text as one line with its newline, or "" when it has no text."""
    # join_texts strips the piece; splitting on lines keeps one segment to one line.
    line = join_texts(segment.text.splitlines())
    return line + "\n" if line else ""


def render(transcript: Transcript) -> str:
    return "".join(format_line(s) for s in transcript.segments)
