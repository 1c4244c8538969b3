"""FunASR's FSMN-VAD (offline mode) as an alternative to tingxie's Silero VAD."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..segments import SpeechSpan
from .loading import load_funasr_model


class FsmnVad:
    def __init__(self, model_dir: Path, device: str = "cpu", max_segment_s: float = 60.0):
        self.path = Path(model_dir)
        # FSMN-VAD cuts speech longer than max_single_segment_time itself, as FunASR runs it.
        self._loaded = load_funasr_model(model_dir, device, overrides={
            "model_conf": {"max_single_segment_time": int(max_segment_s * 1000)},
            "frontend_conf": {"dither": 0.0},
        })

    def detect(self, audio: np.ndarray) -> list[SpeechSpan]:
        """Speech spans of a whole recording (16 kHz float32), in seconds."""
        if len(audio) == 0:
            return []
        kwargs = dict(self._loaded.kwargs)
        with torch.inference_mode():
            results, _ = self._loaded.model.inference(data_in=[torch.from_numpy(np.ascontiguousarray(audio))],
                                                      key=["vad"], **kwargs)
        duration = len(audio) / 16000
        spans = []
        for start_ms, end_ms in results[0].get("value", []):
            start, end = max(0.0, start_ms / 1000), min(duration, end_ms / 1000)
            if end > start:
                spans.append(SpeechSpan(start, end))
        return spans
