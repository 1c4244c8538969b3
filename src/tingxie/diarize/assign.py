"""A speaker for every word and every output segment; a segment where the speaker changes is cut.

Words (Whisper with timestamps) are labelled by the turn they overlap most within their first
WORD_PROBE_S: a recogniser that skipped speech stretches the word before the skip over it (tiny.en
gave one word 12 s), and such a word belongs to whoever said its start. A segment whose last
word runs into another speaker's turn ends where that turn starts (the diarization heard another
voice there); words keep the recogniser's times. A segment whose words have more than one speaker becomes one segment per run of words, so
subtitles start a new cue at the change. Without words (Paraformer's sentences, Whisper without
timestamps) a whole segment gets the speaker who talks most during it.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from tingxie.diarize.timeline import Timeline
from tingxie.segments import TextSegment

EDGE_S = 0.02  # a word whose middle is this close outside a segment still belongs to it
WORD_PROBE_S = 1.0  # a word's speaker is decided by its first second (longer words are misaligned)


def speaker_name(label: int) -> str:
    return f"Speaker {label + 1}"


def label_segments(pieces: Sequence[TextSegment], words: Sequence[TextSegment],
                   timeline: Timeline) -> list[TextSegment]:
    labelled = sorted(_fit_words(words, timeline), key=lambda pair: (pair[0].start, pair[0].end))
    out: list[TextSegment] = []
    next_word = 0
    for piece in pieces:
        while next_word < len(labelled) and _middle(labelled[next_word][0]) < piece.start - EDGE_S:
            next_word += 1
        inside = []
        scan = next_word
        while scan < len(labelled) and _middle(labelled[scan][0]) <= piece.end + EDGE_S:
            inside.append(labelled[scan])
            scan += 1
        if inside and _same_text([word for word, _, _ in inside], piece.text):
            next_word = scan
            out.extend(_split_by_speaker(piece, inside))
        else:
            out.append(_named(piece, timeline.speaker_at(piece.start, piece.end)))
    return out


def label_words(words: Sequence[TextSegment], timeline: Timeline) -> list[TextSegment]:
    return [_named(word, speaker) for word, speaker, _ in _fit_words(words, timeline)]


def _fit_words(words: Sequence[TextSegment], timeline: Timeline) -> list[tuple[TextSegment, int | None, float]]:
    """Each word with its speaker and where a segment it ends should end: the word's end, or where
    another speaker's turn starts if the word runs into one (the word keeps the recogniser's times)."""
    out = []
    for word in words:
        speaker = timeline.speaker_at(word.start, min(word.end, word.start + WORD_PROBE_S))
        change = timeline.change_after(word.start, speaker) if speaker is not None else None
        out.append((word, speaker, word.end if change is None else max(word.start, min(word.end, change))))
    return out


def _split_by_speaker(piece: TextSegment, words: list[tuple[TextSegment, int | None, float]]) -> list[TextSegment]:
    runs: list[tuple[int | None, list[TextSegment], float]] = []  # (speaker, words, where the run ends)
    for word, speaker, ends in words:
        if runs and runs[-1][0] == speaker:
            runs[-1] = (speaker, runs[-1][1] + [word], ends)
        else:
            runs.append((speaker, [word], ends))
    texts = _cut_text(piece.text, [len(run) for _, run, _ in runs], [word for _, run, _ in runs for word in run])
    out = []
    for number, ((speaker, run, ends), text) in enumerate(zip(runs, texts)):
        start = piece.start if number == 0 else run[0].start
        if ends < run[-1].end:  # its last word runs into another speaker's turn
            end = min(piece.end, ends)
        else:
            end = piece.end if number == len(runs) - 1 else run[-1].end
        out.append(_named(dataclasses.replace(piece, start=start, end=max(start, end), text=text), speaker))
    return out


def _cut_text(text: str, run_lengths: list[int], words: list[TextSegment]) -> list[str]:
    """The segment's own text cut between runs of words (its spacing kept: words may be stripped,
    and languages without spaces must not gain any). The words spell the text (_same_text)."""
    if len(run_lengths) == 1:
        return [text.strip()]
    cuts, position, word_number = [], 0, 0
    for length in run_lengths[:-1]:
        for word in words[word_number:word_number + length]:
            for char in "".join(word.text.split()):
                while text[position].isspace():
                    position += 1
                position += 1  # this character of the word
        word_number += length
        cuts.append(position)
    bounds = [0, *cuts, len(text)]
    return [text[a:b].strip() for a, b in zip(bounds, bounds[1:])]


def _named(segment: TextSegment, label: int | None) -> TextSegment:
    return dataclasses.replace(segment, speaker=None if label is None else speaker_name(label))


def _middle(segment: TextSegment) -> float:
    return (segment.start + segment.end) / 2


def _same_text(words: list[TextSegment], text: str) -> bool:
    # Splitting by words is only safe when the words spell the segment (no text stage rewrote it).
    return "".join("".join(word.text for word in words).split()) == "".join(text.split())
