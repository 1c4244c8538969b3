"""From labelled windows to speaker turns: smoothing, then who speaks when.

Windows overlap (1.6 s long, 1 s apart), so each one is given the time nearest its centre; a
single window that disagrees with both neighbours of one voice is taken for a blip and relabelled.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

ADJACENT_GAP_S = 0.05  # windows closer than this belong to one stretch of audio


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: int


CHUNK_WINDOWS = 3  # windows averaged into one point for clustering (about 3.6 s of speech)


def chunks(starts, ends, size: int = CHUNK_WINDOWS) -> list[list[int]]:
    """Runs of at most `size` neighbouring windows of one stretch of audio, as row numbers."""
    out: list[list[int]] = []
    for i in range(len(starts)):
        if out and len(out[-1]) < size and starts[i] <= ends[i - 1] + ADJACENT_GAP_S:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def smooth(starts, ends, labels) -> np.ndarray:
    """Relabel lone windows that sit between two neighbours of another, single voice."""
    labels = np.array(labels, dtype=np.int64)
    smoothed = labels.copy()
    for i in range(1, len(labels) - 1):
        touching = starts[i] <= ends[i - 1] + ADJACENT_GAP_S and starts[i + 1] <= ends[i] + ADJACENT_GAP_S
        if touching and labels[i - 1] == labels[i + 1] != labels[i]:
            smoothed[i] = labels[i - 1]
    return smoothed


def turns(starts, ends, labels) -> list[Turn]:
    """Speaker turns in time order; neighbouring windows share the time between their centres."""
    count = len(labels)
    pieces = []
    for i in range(count):
        start, end = starts[i], ends[i]
        centre = (start + end) / 2
        if i > 0 and starts[i] < ends[i - 1]:  # overlaps the previous window
            start = max(start, (centre + (starts[i - 1] + ends[i - 1]) / 2) / 2)
        if i + 1 < count and starts[i + 1] < ends[i]:
            end = min(end, (centre + (starts[i + 1] + ends[i + 1]) / 2) / 2)
        pieces.append(Turn(start, end, int(labels[i])))
    merged: list[Turn] = []
    for piece in pieces:
        if merged and merged[-1].speaker == piece.speaker and piece.start <= merged[-1].end + ADJACENT_GAP_S:
            merged[-1] = Turn(merged[-1].start, max(merged[-1].end, piece.end), piece.speaker)
        else:
            merged.append(piece)
    return merged


class Timeline:
    """Turns in time order, searchable by time (a word's speaker is a binary search away)."""

    def __init__(self, turns_in_order: list[Turn]):
        self.turns = turns_in_order
        self._ends = [turn.end for turn in turns_in_order]
        # _next_other[i]: the first turn after i whose speaker is not turn i's (len: none)
        self._next_other = [len(turns_in_order)] * len(turns_in_order)
        for i in range(len(turns_in_order) - 2, -1, -1):
            following = turns_in_order[i + 1]
            self._next_other[i] = i + 1 if following.speaker != turns_in_order[i].speaker else self._next_other[i + 1]

    def speaker_at(self, start: float, end: float) -> int | None:
        """The speaker who talks most during [start, end]; the nearest turn's if none overlaps."""
        if not self.turns:
            return None
        first = bisect.bisect_right(self._ends, start)
        overlap: dict[int, float] = {}
        for turn in self.turns[first:]:
            if turn.start >= end:
                break
            shared = min(end, turn.end) - max(start, turn.start)
            if shared > 0:
                overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
        if overlap:
            return max(sorted(overlap), key=lambda speaker: overlap[speaker])
        middle = (start + end) / 2
        around = self.turns[max(0, first - 1):first + 1]
        nearest = min(around, key=lambda turn: (max(turn.start - middle, middle - turn.end, 0.0), turn.start))
        return nearest.speaker

    def change_after(self, time: float, speaker: int) -> float | None:
        """Where the first turn of another speaker that starts after `time` starts; None if none."""
        index = bisect.bisect_right(self._ends, time)  # the first turn ending after `time`
        if index < len(self.turns) and self.turns[index].start <= time:
            index += 1  # it holds `time`: only turns that start after it count
        while index < len(self.turns) and self.turns[index].speaker == speaker:
            index = self._next_other[index]
        return self.turns[index].start if index < len(self.turns) else None
