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
from tingxie.diarize.clustering import DEFAULT_THRESHOLD
from tingxie.diarize.encoder import EMBEDDING_SIZE, WINDOW_FRAMES, SpeakerEncoder
from tingxie.diarize.features import HOP, N_MELS, level_gain, mel_spectrogram
from tingxie.diarize.features import scratch_bytes as mel_scratch_bytes
from tingxie.segments import AudioSegment

WINDOW_S = WINDOW_FRAMES * HOP / SAMPLE_RATE  # 1.6 s
# Windows overlap by 0.6 s. A 1.6 s step (no overlap) made 23 % fewer windows but lost the speaker
# count at thresholds where 1 s kept it (docs/benchmarks.md, diarization).
STEP_S = 1.0
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
    """Starts (seconds into a stretch) of the windows covering a stretch of this length, on the
    10 ms frame grid, so every window's mel frames are rows of the stretch's own."""
    return [frame * HOP / SAMPLE_RATE for frame in window_frames(int(round(length_s * SAMPLE_RATE)))]


def window_frames(samples: int) -> list[int]:
    """First mel frame of each window over a stretch of this many samples."""
    if samples < MIN_WINDOW_S * SAMPLE_RATE:
        return []
    full = samples // HOP  # whole frames in the stretch
    if full <= WINDOW_FRAMES:
        return [0]
    step = int(round(STEP_S * SAMPLE_RATE / HOP))
    count = -(-(full - WINDOW_FRAMES) // step) + 1
    return [i * step for i in range(count - 1)] + [full - WINDOW_FRAMES]  # the last ends with the stretch


def working_bytes(encoder: SpeakerEncoder, longest_stretch_s: float) -> int:
    """The most memory the embedder holds beside its kept vectors: a batch of pending mel windows,
    their stacked copy and the encoder's scratch for them, and the mel scratch of the longest
    stretch a segment can hold (the segment's own audio is the pipeline's)."""
    window_mel = WINDOW_FRAMES * N_MELS * 4
    return (2 * BATCH * window_mel + encoder.scratch_bytes(BATCH)
            + mel_scratch_bytes(int(longest_stretch_s * SAMPLE_RATE)))


def kept_bytes_per_window() -> int:
    """What one window leaves behind (about 1.2 KB; 4.3 MB an hour of speech): its unit vector
    (float32, a row of its batch's array, with its array header) and two times (Python floats in lists)."""
    return EMBEDDING_SIZE * 4 + 120 + 8 + 2 * (24 + 8)


def stretches(segment: AudioSegment):
    """(file start, samples) of each stretch of contiguous audio a segment holds: a packed
    segment's parts, else the whole segment."""
    parts = segment.parts or ((0.0, segment.start, len(segment.samples) / SAMPLE_RATE),)
    for offset, file_start, length in parts:
        first = int(round(offset * SAMPLE_RATE))
        yield file_start, segment.samples[first:first + int(round(length * SAMPLE_RATE))]


class PendingWindows:
    """Windows queued with their file times and embedded `batch` at a time; the vectors kept."""

    def __init__(self, embed, batch: int):
        self._embed = embed  # a list of queued inputs -> their vectors, one row each
        self._batch = batch
        self.windows = SpeakerWindows()
        self._pending: list[tuple[float, float, np.ndarray]] = []

    def queue(self, start: float, end: float, item: np.ndarray) -> None:
        self._pending.append((start, end, item))
        if len(self._pending) >= self._batch:
            self._flush()

    def add(self, segment: AudioSegment) -> None:
        """Cut a segment's speech into windows and queue them (each encoder cuts its own way)."""
        raise NotImplementedError

    def finish(self) -> SpeakerWindows:
        self._flush()
        return self.windows

    def _flush(self) -> None:
        if not self._pending:
            return
        vectors = self._embed([item for _, _, item in self._pending])
        for (start, end, _), vector in zip(self._pending, vectors):
            self.windows.starts.append(start)
            self.windows.ends.append(end)
            self.windows.vectors.append(vector)
        self._pending.clear()


class WindowEmbedder(PendingWindows):
    """The embedded encoder's windows: 1.6 s of mel frames every second of each stretch."""

    def __init__(self, encoder: SpeakerEncoder):
        super().__init__(lambda mels: _embed_one_thread(encoder, np.stack(mels)), BATCH)
        self.encoder = encoder

    def add(self, segment: AudioSegment) -> None:
        """Cut a segment's speech into windows; vectors are computed a batch at a time."""
        for file_start, stretch in stretches(segment):
            starts = window_frames(len(stretch))
            if not starts:
                continue
            # The stretch's mel frames once (windows overlap); each window is brought to the
            # training level by its own loudness: power scales with the gain squared.
            mel = mel_spectrogram(stretch)
            for frame in starts:
                window = stretch[frame * HOP:frame * HOP + WINDOW_FRAMES * HOP]
                rows = mel[frame:frame + WINDOW_FRAMES] * np.float32(level_gain(window) ** 2)
                if len(rows) < WINDOW_FRAMES:  # a short stretch: zero frames after it, as in training
                    rows = np.pad(rows, ((0, WINDOW_FRAMES - len(rows)), (0, 0)))
                start = file_start + frame * HOP / SAMPLE_RATE
                self.queue(start, start + len(window) / SAMPLE_RATE, rows)


def _embed_one_thread(encoder: SpeakerEncoder, mels: np.ndarray) -> np.ndarray:
    # The LSTM makes hundreds of small matrix products per batch. OpenBLAS spreading each over
    # all cores ran 14x slower than one thread on a loaded 2-core machine (its threads spin while
    # the recogniser holds the cores), so BLAS gets one thread while the encoder runs.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return encoder.embed(mels)


class EmbeddedVoices:
    """The embedded encoder as diarization sees a voice encoder (campplus.CamPlusEncoder is the
    other): its clustering threshold, its windows, its working memory."""

    same_voice = DEFAULT_THRESHOLD

    def __init__(self, encoder: SpeakerEncoder):
        self.encoder = encoder

    def new_embedder(self) -> WindowEmbedder:
        return WindowEmbedder(self.encoder)

    def working_bytes(self, longest_stretch_s: float) -> int:
        return working_bytes(self.encoder, longest_stretch_s)
