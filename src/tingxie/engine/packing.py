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


JOIN_AFTER_TEXT_S = 1.0  # how far past its last word's aligned end a join may be and still be where the text stopped


def resume_point(segment: AudioSegment, word_start: float, word_end: float) -> float:
    """Where to decode again a window whose text stopped at a word (seconds into its samples):
    the first join between packed spans after the word began, a clean cut in a pause, unless it
    lies more than JOIN_AFTER_TEXT_S past the word's end (the text stopped inside a span): then
    the word's end. An aligned last word's end runs late, over the speech the text left out
    (3 s into jfk's sentence after LJ001-0016's "therefore"); its start does not."""
    joins = [at for at, _, _ in segment.parts[1:] if at > word_start]
    return joins[0] if joins and joins[0] <= word_end + JOIN_AFTER_TEXT_S else word_end


def remainder(segment: AudioSegment, from_s: float) -> AudioSegment:
    """What a window holds after its first `from_s` seconds of samples, with the map to file
    time kept: the rest of a window whose text stopped early, to be decoded as a window of its
    own (backends/whisper). Packed or not, the result is packed: its parts say where it is."""
    cut = min(max(int(round(from_s * SAMPLE_RATE)), 0), len(segment.samples))
    from_s = cut / SAMPLE_RATE
    held = segment.parts or ((0.0, segment.start, segment.end - segment.start),)
    parts = []
    for at, start, length in held:
        skipped = min(max(from_s - at, 0.0), length)
        if skipped < length:
            parts.append((max(at - from_s, 0.0), start + skipped, length - skipped))
    return AudioSegment(segment.index, parts[0][1] if parts else segment.end, segment.end,
                        segment.samples[cut:], tuple(parts))
