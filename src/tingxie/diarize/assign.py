"""A speaker for every word and every output segment; a segment where the speaker changes is cut.

Words (Whisper with timestamps) are labelled by the turn they overlap most; a segment whose words
have more than one speaker becomes one segment per run of words, so subtitles start a new cue at
the change. Without words (Paraformer's sentences, Whisper without timestamps) a whole segment
gets the speaker who talks most during it.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from tingxie.diarize.timeline import Timeline
from tingxie.segments import TextSegment

EDGE_S = 0.02  # a word whose middle is this close outside a segment still belongs to it


def speaker_name(label: int) -> str:
    return f"Speaker {label + 1}"


def label_segments(pieces: Sequence[TextSegment], words: Sequence[TextSegment],
                   timeline: Timeline) -> list[TextSegment]:
    words = sorted(words, key=lambda word: (word.start, word.end))
    out: list[TextSegment] = []
    next_word = 0
    for piece in pieces:
        while next_word < len(words) and _middle(words[next_word]) < piece.start - EDGE_S:
            next_word += 1
        inside = []
        scan = next_word
        while scan < len(words) and _middle(words[scan]) <= piece.end + EDGE_S:
            inside.append(words[scan])
            scan += 1
        if inside and _same_text(inside, piece.text):
            next_word = scan
            out.extend(_split_by_speaker(piece, inside, timeline))
        else:
            out.append(_named(piece, timeline.speaker_at(piece.start, piece.end)))
    return out


def label_words(words: Sequence[TextSegment], timeline: Timeline) -> list[TextSegment]:
    return [_named(word, timeline.speaker_at(word.start, word.end)) for word in words]


def _split_by_speaker(piece: TextSegment, words: list[TextSegment], timeline: Timeline) -> list[TextSegment]:
    speakers = [timeline.speaker_at(word.start, word.end) for word in words]
    runs: list[tuple[int | None, list[TextSegment]]] = []
    for word, speaker in zip(words, speakers):
        if runs and runs[-1][0] == speaker:
            runs[-1][1].append(word)
        else:
            runs.append((speaker, [word]))
    if len(runs) == 1:
        return [_named(piece, runs[0][0])]
    out = []
    for number, (speaker, run) in enumerate(runs):
        start = piece.start if number == 0 else run[0].start
        end = piece.end if number == len(runs) - 1 else run[-1].end
        text = "".join(word.text for word in run).strip()
        out.append(_named(TextSegment(start, max(start, end), text), speaker))
    return out


def _named(segment: TextSegment, label: int | None) -> TextSegment:
    return dataclasses.replace(segment, speaker=None if label is None else speaker_name(label))


def _middle(segment: TextSegment) -> float:
    return (segment.start + segment.end) / 2


def _same_text(words: list[TextSegment], text: str) -> bool:
    # Splitting by words is only safe when the words spell the segment (no text stage rewrote it).
    return "".join("".join(word.text for word in words).split()) == "".join(text.split())
