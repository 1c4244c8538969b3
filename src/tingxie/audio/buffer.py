"""The audio still needed: samples from the earliest point a future segment may start.

Decoded chunks are appended; spans are cut out as copies; everything before the end of the
last span the VAD has closed is dropped, since no later span can start before it. So what is
held is bounded by the VAD's open span, never by the length of the file.
"""

from __future__ import annotations

import numpy as np

from tingxie import SAMPLE_RATE


class RollingAudio:
    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._first_sample = 0  # absolute index of the first held sample
        self._held = 0

    @property
    def end_sample(self) -> int:
        return self._first_sample + self._held

    @property
    def held_samples(self) -> int:
        return self._held

    def append(self, chunk: np.ndarray) -> None:
        if len(chunk):
            self._chunks.append(chunk)
            self._held += len(chunk)

    def cut(self, start_s: float, end_s: float) -> np.ndarray:
        """A copy of the samples in [start_s, end_s); the span must still be held."""
        # round: times in seconds are whole samples or milliseconds; int() would cut 1.23 s at
        # sample 19679 (1.23 * 16000 = 19679.99...) where FunASR cuts 1230 ms at 19680
        first, last = round(start_s * SAMPLE_RATE), min(round(end_s * SAMPLE_RATE), self.end_sample)
        if first < self._first_sample:
            raise ValueError(f"audio before {self._first_sample / SAMPLE_RATE:.3f} s was already dropped")
        self._consolidate()
        held = self._chunks[0] if self._chunks else np.zeros(0, np.float32)
        return held[first - self._first_sample : last - self._first_sample].copy()

    def drop_before(self, seconds: float) -> None:
        sample = min(int(seconds * SAMPLE_RATE), self.end_sample)
        while self._chunks and self._first_sample + len(self._chunks[0]) <= sample:
            self._first_sample += len(self._chunks[0])
            self._held -= len(self._chunks[0])
            self._chunks.pop(0)
        if self._chunks and sample > self._first_sample:
            cut = sample - self._first_sample
            self._chunks[0] = self._chunks[0][cut:].copy()  # copy: free the dropped part
            self._first_sample, self._held = sample, self._held - cut

    def _consolidate(self) -> None:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
