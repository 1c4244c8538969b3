"""FunASR's CAM++ speaker model as diarization's voice encoder (--spk-model cam++ or a directory).

The model is loaded and run through FunASR's own classes (AutoModel reads the model directory's
config.yaml and model.pt; features are its campplus.utils.extract_feature: Kaldi fbank with 80
mel bins, mean-normalised per window), so the vectors are the ones FunASR's own diarization
computes. Windows are FunASR's too (campplus.utils.sv_chunk): 1.5 s every 0.75 s inside each
stretch of speech, the last one ending with the stretch. It needs the funasr extra (torch).

Only vectors and times are kept, as with the embedded encoder (windows.py). The clustering
threshold for its vectors is FunASR's agglomerative merge threshold: no CAM++ weights can be
downloaded on the machine this was built on, so it was not tuned here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tingxie import SAMPLE_RATE
from tingxie.diarize.windows import PendingWindows, stretches
from tingxie.errors import OptionError
from tingxie.segments import AudioSegment

WINDOW_S = 1.5  # FunASR's sv_chunk seg_dur
STEP_S = 0.75  # and seg_shift
MIN_WINDOW_S = 0.5  # shorter stretches are left out, as for the embedded encoder
BATCH = 32  # windows embedded at once
SAME_VOICE = 0.78  # FunASR's ClusterBackend AHC merge_thr (cosine similarity)


def model_dir(name: str) -> Path:
    """--spk-model's directory: a FunASR model directory, `cam++` or a ModelScope id, through
    tingxie's FunASR model lookup (its cache, then ModelScope's; a download only where a network is)."""
    from tingxie.models.funasr_hub import resolve_funasr_model

    return resolve_funasr_model(name, "speaker model")


class CamPlusEncoder:
    """CAM++ through FunASR: unit voice vectors of 1.5 s windows of 16 kHz audio."""

    same_voice = SAME_VOICE

    def __init__(self, directory: Path):
        from tingxie.backends.paraformer.importing import import_funasr

        funasr = import_funasr()
        self.directory = directory
        self._auto = funasr.AutoModel(model=str(directory), device="cpu", disable_update=True, disable_pbar=True,
                                      log_level="ERROR")
        self.model = self._auto.model
        if type(self.model).__name__ != "CAMPPlus":
            raise OptionError(f"--spk-model {directory}: a {type(self.model).__name__} model, not CAM++ (CAMPPlus)")
        self.model.eval()

    def embed(self, windows: list[np.ndarray]) -> np.ndarray:
        """[len(windows), embedding size] float32 unit vectors, the windows of one length run
        together (FunASR pads a batch's features: equal lengths leave nothing padded)."""
        import torch
        from funasr.models.campplus.utils import extract_feature

        by_length: dict[int, list[int]] = {}
        for index, window in enumerate(windows):
            by_length.setdefault(len(window), []).append(index)
        vectors: dict[int, np.ndarray] = {}
        with torch.no_grad():
            for indices in by_length.values():
                features, _, _ = extract_feature([torch.from_numpy(np.asarray(windows[i], np.float32))
                                                  for i in indices])
                embedded = self.model(features.to(torch.float32)).numpy()
                for i, vector in zip(indices, embedded):
                    vectors[i] = vector
        out = np.stack([vectors[i] for i in range(len(windows))]).astype(np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def new_embedder(self) -> "ChunkEmbedder":
        return ChunkEmbedder(self)

    def working_bytes(self, longest_stretch_s: float) -> int:
        """A batch of pending windows and the model's activations for it: CAM++'s widest layer
        holds ~512 channels x 150 frames per window, a few of them at once (the dense blocks
        concatenate), bounded here by 16 such maps a window; the features are 80 x 150."""
        window_audio = int(WINDOW_S * SAMPLE_RATE) * 4
        frames = int(WINDOW_S * 100)
        return BATCH * (window_audio + 80 * frames * 4 + 16 * 512 * frames * 4)


def window_starts(samples: int) -> list[int]:
    """Sample offsets of FunASR's sv_chunk windows over a stretch of this many samples."""
    if samples < MIN_WINDOW_S * SAMPLE_RATE:
        return []
    length, step = int(WINDOW_S * SAMPLE_RATE), int(STEP_S * SAMPLE_RATE)
    starts, last_end = [], 0
    for start in range(0, samples, step):
        end = min(start + length, samples)
        if end <= last_end:
            break
        last_end = end
        starts.append(max(0, end - length))
    return starts


class ChunkEmbedder(PendingWindows):
    """The CAM++ counterpart of windows.WindowEmbedder: FunASR's windows of each stretch."""

    def __init__(self, encoder: CamPlusEncoder):
        super().__init__(encoder.embed, BATCH)
        self.encoder = encoder

    def add(self, segment: AudioSegment) -> None:
        length = int(WINDOW_S * SAMPLE_RATE)
        for file_start, stretch in stretches(segment):
            for start in window_starts(len(stretch)):
                window = np.array(stretch[start:start + length], np.float32)
                begin, end = file_start + start / SAMPLE_RATE, file_start + (start + len(window)) / SAMPLE_RATE
                if len(window) < length:  # a stretch shorter than a window: zeros after it, as FunASR pads
                    window = np.pad(window, (0, length - len(window)))
                self.queue(begin, end, window)
