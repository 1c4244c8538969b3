"""Plain text output: one line per segment that has text."""

from __future__ import annotations

from tingxie.segments import TextSegment, Transcript, join_texts


def format_line(segment: TextSegment) -> str:
    """The segment's text as one line with its newline, or "" when it has no text."""
    # join_texts strips the piece; splitting on lines keeps one segment to one line.
    line = join_texts(segment.text.splitlines())
    return line + "\n" if line else ""


def render(transcript: Transcript) -> str:
    if any(s.speaker is not None for s in transcript.segments):
        return _speaker_turns(transcript.segments)
    return "".join(format_line(s) for s in transcript.segments)


def _speaker_turns(segments) -> str:
    """With speakers (--diarize): one paragraph per turn, led by who speaks."""
    turns: list[tuple[str | None, list[str]]] = []
    for segment in segments:
        line = format_line(segment).strip()
        if not line:
            continue
        if turns and turns[-1][0] == segment.speaker:
            turns[-1][1].append(line)
        else:
            turns.append((segment.speaker, [line]))
    return "".join(f"{speaker or 'Unknown'}: {join_texts(lines)}\n" for speaker, lines in turns)
