"""Voice vectors of short windows of speech, taken from segments as they stream by.

Only the vectors and their times are kept (about 1 KB per window), never audio, so memory stays flat
in the length of the input. Windows are laid inside each stretch of contiguous audio (a packed
segment's parts are separate stretches), so no window straddles the silence a packing cut out.
The result depends only on the audio, so a resumed run that decodes the same audio again finds the
same vectors, and the same speakers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tingxie import SAMPLE_RATE
from tingxie.diarize.encoder import WINDOW_FRAMES, SpeakerEncoder
from tingxie.diarize.features import HOP, mel_spectrogram, normalise_level
from tingxie.segments import AudioSegment

WINDOW_S = WINDOW_FRAMES * HOP / SAMPLE_RATE  # 1.6 s
STEP_S = 1.0  # windows overlap by 0.6 s; a closer step costs encoder time (see docs/benchmarks.md)
MIN_WINDOW_S = 0.5  # shorter stretches say too little about a voice to be worth a vector
BATCH = 64  # windows the encoder runs at once


@dataclass
class SpeakerWindows:
    """Every window's time span in the file and its unit voice vector, in time order."""

    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)

    def matrix(self) -> np.ndarray:
        return np.vstack(self.vectors) if self.vectors else np.zeros((0, 0), dtype=np.float32)


def window_offsets(length_s: float) -> list[float]:
    """Starts (seconds into a stretch) of the windows covering a stretch of this length."""
    if length_s < MIN_WINDOW_S:
        return []
    if length_s <= WINDOW_S:
        return [0.0]
    count = int(np.ceil((length_s - WINDOW_S) / STEP_S)) + 1
    starts = [i * STEP_S for i in range(count - 1)]
    return starts + [length_s - WINDOW_S]  # the last one ends with the stretch, unpadded


class WindowEmbedder:
    def __init__(self, encoder: SpeakerEncoder):
        self.encoder = encoder
        self.windows = SpeakerWindows()
        self._pending: list[tuple[float, float, np.ndarray]] = []

    def add(self, segment: AudioSegment) -> None:
        """Cut a segment's speech into windows; vectors are computed a batch at a time."""
        stretches = segment.parts or ((0.0, segment.start, len(segment.samples) / SAMPLE_RATE),)
        for offset, file_start, length in stretches:
            for start in window_offsets(length):
                first = int(round((offset + start) * SAMPLE_RATE))
                count = int(round(min(WINDOW_S, length) * SAMPLE_RATE))
                samples = segment.samples[first:first + count]
                mel = mel_spectrogram(normalise_level(samples))[:WINDOW_FRAMES]
                if len(mel) < WINDOW_FRAMES:  # a short stretch: zero frames after it, as in training
                    mel = np.pad(mel, ((0, WINDOW_FRAMES - len(mel)), (0, 0)))
                end = file_start + min(start + WINDOW_S, length)
                self._pending.append((file_start + start, end, mel))
                if len(self._pending) >= BATCH:
                    self._flush()

    def finish(self) -> SpeakerWindows:
        self._flush()
        return self.windows

    def _flush(self) -> None:
        if not self._pending:
            return
        vectors = _embed_one_thread(self.encoder, np.stack([mel for _, _, mel in self._pending]))
        for (start, end, _), vector in zip(self._pending, vectors):
            self.windows.starts.append(start)
            self.windows.ends.append(end)
            self.windows.vectors.append(vector)
        self._pending.clear()


def _embed_one_thread(encoder: SpeakerEncoder, mels: np.ndarray) -> np.ndarray:
    # The LSTM makes hundreds of small matrix products per batch. OpenBLAS spreading each over
    # all cores ran 14x slower than one thread on a loaded 2-core machine (its threads spin while
    # the recogniser holds the cores), so BLAS gets one thread while the encoder runs.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return encoder.embed(mels)
