"""Silero VAD's ONNX model (never torch) turned into one speech probability per 32 ms frame.

The model is recurrent: each frame sees the last _CONTEXT samples of the one before and the
LSTM state it left. Its encoder does not need the state, so it is cut off (vad_graph) and run
on a block of frames in one call; only the decoder goes frame by frame. That computes exactly
the whole model's probabilities for ~1.3x less CPU (docs/benchmarks.md).

Lanes (LaneLayout with lanes > 1) also run several stretches of the stream side by side
through the decoder. A lane that does not continue the carried state starts afresh a little
earlier (the warm-up), but the model's state forgets that start only over tens of seconds:
its probabilities differ by up to ~0.7 and spans move, so lanes are measured, not the default.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime

from tingxie import SAMPLE_RATE
from tingxie.errors import ModelNotFoundError, OptionError
from tingxie.vad.silero_graph import cut_encoder

FRAME = 512  # samples per probability at 16 kHz
FRAME_S = FRAME / SAMPLE_RATE
_CONTEXT = 64  # samples of the previous frame the model sees before each frame
_STATE = 128
_SR = np.array(SAMPLE_RATE, dtype=np.int64)


def model_path() -> Path:
    """The ONNX file shipped in the silero_vad package, found without importing it (it imports torch)."""
    spec = importlib.util.find_spec("silero_vad")
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / "data" / "silero_vad.onnx"
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError("silero VAD model not found: run `pip install --no-deps silero-vad`")


def _session(model: str | bytes) -> onnxruntime.InferenceSession:
    # One thread: the model is tiny and sequential; the cores belong to the recogniser.
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # the cut parts keep constants they do not use: no warnings
    return onnxruntime.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


class SileroModel:
    """encode(frames) -> features, any number of frames at once; decode(features, state) ->
    (probabilities, state), one frame per row. Cut in two where possible, else the whole model
    (encode then passes the frames through)."""

    def __init__(self, path: str):
        self.whole = _session(path)
        try:
            encoder, decoder, features = cut_encoder(Path(path).read_bytes())
            self._encoder, self._decoder, self._features = _session(encoder), _session(decoder), features
        except Exception:  # noqa: BLE001 (another model version: any failure to cut means the whole model)
            self.is_cut = False
            return
        self.is_cut = self._matches_whole()

    def encode(self, frames: np.ndarray) -> np.ndarray:
        return self._encoder.run(None, {"input": frames})[0] if self.is_cut else np.ascontiguousarray(frames)

    def decode(self, features: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.is_cut:
            out, state = self._decoder.run(None, {self._features: features, "state": state})
        else:
            out, state = self.whole.run(None, {"input": features, "state": state, "sr": _SR})
        return out[:, 0], state

    def _matches_whole(self) -> bool:
        """The parts give bitwise the whole model's outputs on a few frames of noise and tone."""
        rng = np.random.default_rng(0)
        frames = (rng.normal(0, 0.1, (12, _CONTEXT + FRAME)) + np.sin(np.arange(_CONTEXT + FRAME) / 3)).astype(np.float32)
        cut = whole = np.zeros((2, 1, _STATE), np.float32)
        features = self._encoder.run(None, {"input": frames})[0]
        for i in range(len(frames)):
            cut_out, cut = self._decoder.run(None, {self._features: features[i : i + 1], "state": cut})
            whole_out, whole = self.whole.run(None, {"input": frames[i : i + 1], "state": whole, "sr": _SR})
            if not (np.array_equal(cut_out, whole_out) and np.array_equal(cut, whole)):
                return False
        return True


@functools.lru_cache(maxsize=4)
def silero_model(path: str) -> SileroModel:
    return SileroModel(path)


@dataclass(frozen=True)
class LaneLayout:
    """How a block of frames is cut into lanes that run in lockstep, one batched call per step.

    A block is lanes * lane_frames + warmup frames. Lane 0 continues the state and context
    carried from the previous block and produces the first lane_frames + warmup frames; lane
    k >= 1 starts at frame k * lane_frames as if the stream began there (zero state, zero
    context), runs warmup frames whose probabilities are dropped, then produces its
    lane_frames. Every lane runs lane_frames + warmup steps. lanes=1 is the exact sequential
    model; lane_frames=1 as well emits each frame as soon as it is complete.
    """

    lanes: int
    lane_frames: int
    warmup: int

    def __post_init__(self) -> None:
        if self.lanes < 1 or self.lane_frames < 1 or self.warmup < 0:
            raise OptionError(f"VAD lanes need lanes >= 1, lane_frames >= 1, warmup >= 0, not {self}")
        if self.lanes == 1 and self.warmup:
            raise OptionError("one VAD lane continues the carried state: it has no warm-up")

    @property
    def block_frames(self) -> int:
        return self.lanes * self.lane_frames + self.warmup


SEQUENTIAL = LaneLayout(lanes=1, lane_frames=1, warmup=0)  # a frame out as soon as it is complete
# The default: exact; the encoder runs on 64 frames (2 s) at a time, where its cost per frame
# stops falling, and the audio held waits 2 s at most.
EXACT = LaneLayout(lanes=1, lane_frames=64, warmup=0)
# ~1.7x cheaper than EXACT again (2.2x the whole model), but not exact (module doc): 12 lanes of
# 2.56 s and a 0.77 s warm-up, a block of 31.5 s; more lanes or a longer warm-up buy little.
LANES = LaneLayout(lanes=12, lane_frames=80, warmup=24)


class SpeechProbabilities:
    """Speech probability per FRAME samples, for 16 kHz mono audio pushed in chunks of any size.

    Frames come out a block at a time (layout.block_frames), in order; the same audio in any
    chunking gives the same output, and what is held is one block whatever the audio length.
    """

    def __init__(self, model: str | Path | None = None, layout: LaneLayout = EXACT):
        self.model = silero_model(str(model or model_path()))
        self.layout = layout
        # The carried context, then the block's frames; zeros before the stream starts.
        self._block = np.zeros(_CONTEXT + layout.block_frames * FRAME, np.float32)
        self._filled = 0  # samples of the block pushed so far
        self._state = np.zeros((2, 1, _STATE), np.float32)  # left by the end of the previous block
        self.samples = 0  # pushed so far

    def push(self, audio: np.ndarray) -> np.ndarray:
        """Probabilities of every frame of each block this chunk completes."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        self.samples += len(audio)
        room = len(self._block) - _CONTEXT
        out = []
        at = 0
        while at < len(audio):
            take = min(room - self._filled, len(audio) - at)
            self._block[_CONTEXT + self._filled : _CONTEXT + self._filled + take] = audio[at : at + take]
            self._filled += take
            at += take
            if self._filled == room:
                out.append(self._run_block(self.layout.block_frames))
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def flush(self) -> np.ndarray:
        """At the end of the audio: the rest, its last partial frame zero-padded."""
        frames = -(-self._filled // FRAME)
        if not frames:
            return np.zeros(0, np.float32)
        self._block[_CONTEXT + self._filled :] = 0.0
        return self._run_block(frames)

    def _run_block(self, frames: int) -> np.ndarray:
        """The probabilities of the block's first `frames` frames; carry state and context on."""
        lanes, lane_frames, warmup = self.layout.lanes, self.layout.lane_frames, self.layout.warmup
        # A short last block: the lanes whose own frames start within it; if several, each
        # runs all its steps (the last one past the end, on zeros, dropped).
        used = max(1, min(lanes, -(-(frames - warmup) // lane_frames)))
        steps = lane_frames + warmup if used > 1 else min(frames, lane_frames + warmup)
        # windows[f]: what the model reads for frame f (the context, then the frame)
        windows = np.lib.stride_tricks.as_strided(
            self._block, shape=(self.layout.block_frames, _CONTEXT + FRAME),
            strides=(FRAME * self._block.strides[0], self._block.strides[0]), writeable=False)
        first = np.arange(used) * lane_frames
        features = self.model.encode(windows[: (used - 1) * lane_frames + steps])
        fresh = windows[first[1:]]  # a copy: the fresh lanes' first frames, their streams starting there
        fresh[:, :_CONTEXT] = 0.0
        fresh_features = self.model.encode(fresh) if len(fresh) else None
        state = np.zeros((2, used, _STATE), np.float32)
        state[:, :1] = self._state
        probs = np.empty((used, steps), np.float32)
        for step in range(steps):
            step_features = features[first + step]
            if step == 0 and fresh_features is not None:
                step_features[1:] = fresh_features
            probs[:, step], state = self.model.decode(step_features, state)
        # The block's end is lane used-1's last step: its state goes on to the next block.
        self._state = state[:, used - 1 : used].copy()
        self._block[:_CONTEXT] = self._block[_CONTEXT + frames * FRAME - _CONTEXT : _CONTEXT + frames * FRAME]
        self._filled = 0
        return np.concatenate([probs[0], probs[1:, warmup:].reshape(-1)])[:frames]
