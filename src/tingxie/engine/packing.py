"""Pack consecutive speech spans into fixed windows, leaving the silence between them out.

Whisper computes on a full 30 s window whatever it holds, so a window is cheapest when it is
full of speech. Silences inside a window also invite Whisper to stop early (it closes its
output as if the speech were cut off), which dropped words here. Each packed segment keeps
the map from its samples back to file time (AudioSegment.parts).
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from tingxie import SAMPLE_RATE
from tingxie.segments import AudioSegment


def pack_windows(spans: Iterable[AudioSegment], window_s: float) -> Iterator[AudioSegment]:
    """Join spans in time order while their audio fits one window; a span is never split
    (the VAD already cut spans to at most the window)."""
    pending: list[AudioSegment] = []
    held_s = 0.0
    index = 0
    for span in spans:
        if pending and held_s + span.duration > window_s:
            yield _join(index, pending)
            index, pending, held_s = index + 1, [], 0.0
        pending.append(span)
        held_s += span.duration
    if pending:
        yield _join(index, pending)


def _join(index: int, spans: list[AudioSegment]) -> AudioSegment:
    parts, offset = [], 0.0
    for span in spans:
        length = len(span.samples) / SAMPLE_RATE  # offsets and lengths both from the samples held
        parts.append((offset, span.start, length))
        offset += length
    samples = np.concatenate([span.samples for span in spans]) if len(spans) > 1 else spans[0].samples
    return AudioSegment(index, spans[0].start, spans[-1].end, samples, tuple(parts))
