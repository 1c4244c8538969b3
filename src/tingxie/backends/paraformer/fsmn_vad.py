"""FunASR's FSMN-VAD as a streamed speech detector, in place of tingxie's Silero VAD.

FunASR's offline inference already walks a recording in 60 s strides with the model's state
carried in a cache, and marks only the last stride final. Feeding it the decoded chunks as
they come, with the same cache and is_final held back until the last chunk, makes it cut the
audio at the same 60 s strides, so the spans are FunASR's own; only the unprocessed part of a
stride and the open span are held.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tingxie import SAMPLE_RATE
from tingxie.segments import SpeechSpan
from tingxie.backends.paraformer.loading import FunasrModel, load_funasr_model

# A new span may start a little before the frames the VAD has settled (its start-point
# look-back and decision window are well under a second); audio older than this, and not in
# an open span, is never needed again.
LOOKBACK_S = 5.0


class FsmnVad:
    """The loaded model; detector() starts one recording's detection."""

    def __init__(self, model_dir: Path, device: str = "cpu", longest_s: float = 60.0):
        self.path = Path(model_dir)
        self.loaded: FunasrModel = load_funasr_model(model_dir, device, overrides={"frontend_conf": {"dither": 0.0}})
        # FSMN-VAD cuts longer speech itself (max_single_segment_time, 60 s in FunASR's models);
        # only a configuration above what the recogniser takes is lowered.
        options = self.loaded.model.vad_opts
        options.max_single_segment_time = min(options.max_single_segment_time, int(longest_s * 1000))

    def detector(self) -> "FsmnSpeechDetector":
        return FsmnSpeechDetector(self.loaded)

    def detect(self, audio: np.ndarray) -> list[SpeechSpan]:
        """Speech spans of a whole recording (16 kHz float32), in seconds."""
        detector = self.detector()
        return detector.push(audio) + detector.finish()


class FsmnSpeechDetector:
    """push(chunk) -> spans closed so far; finish() -> the rest (the SpeechDetector protocol)."""

    def __init__(self, loaded: FunasrModel):
        self._loaded = loaded
        self._cache: dict = {}
        self._pending: np.ndarray | None = None  # held back: the last chunk must be marked final
        self._pushed = 0  # samples given to the model
        self._open_from = 0.0  # where the earliest span not yet emitted may start
        self._duration = 0.0

    def push(self, audio: np.ndarray) -> list[SpeechSpan]:
        if len(audio) == 0:
            return []
        spans = self._run(self._pending, final=False) if self._pending is not None else []
        self._pending = np.ascontiguousarray(audio, dtype=np.float32)
        self._duration += len(audio) / SAMPLE_RATE
        return spans

    def finish(self) -> list[SpeechSpan]:
        if self._pending is None:
            return []
        spans = self._run(self._pending, final=True)
        self._pending = None
        return spans

    def earliest_start_s(self) -> float:
        stats = self._cache.get("stats")
        started = [seg.start_ms / 1000 for seg in getattr(stats, "output_data_buf", [])[
            getattr(stats, "output_data_buf_offset", 0):] if seg.contain_seg_start_point]
        settled = (self._pushed - len(self._cache.get("prev_samples", ()))) / SAMPLE_RATE  # frames scored
        return max(0.0, min([settled - LOOKBACK_S, self._open_from, *started]))

    def _run(self, audio: np.ndarray, *, final: bool) -> list[SpeechSpan]:
        kwargs = {**self._loaded.kwargs, "is_final": final, "is_streaming_input": False}
        with torch.inference_mode():
            results, _ = self._loaded.model.inference(data_in=[torch.from_numpy(audio)], key=["vad"],
                                                      cache=self._cache, **kwargs)
        self._pushed += len(audio)
        spans = []
        for start_ms, end_ms in results[0].get("value", []):
            start, end = max(0.0, start_ms / 1000), min(self._duration, end_ms / 1000)
            if end > start:
                spans.append(SpeechSpan(start, end))
            self._open_from = max(self._open_from, end_ms / 1000)
        return spans
