"""Silero VAD's ONNX model (never torch) turned into one speech probability per 32 ms frame.

The model is recurrent: each frame sees the last _CONTEXT samples of the one before and the
LSTM state it left, so run exactly it costs one session.run per frame (SEQUENTIAL). Running
several stretches of the stream ("lanes") side by side in one batched call costs less than
half as much CPU per frame, but a lane that does not continue the carried state starts afresh
a little earlier (the warm-up) and the model's state forgets that start only over tens of
seconds: its probabilities differ by up to ~0.7 and the spans move (docs/benchmarks.md).
So lanes are measured and available, and the default stays exact.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime

from . import SAMPLE_RATE
from .errors import ModelNotFoundError, OptionError

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


@functools.lru_cache(maxsize=4)
def _session(path: str) -> onnxruntime.InferenceSession:
    # One thread: the model is tiny and sequential; the cores belong to the recogniser.
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


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

    lanes: int = 12  # ~65 µs a frame against ~115 sequential; 16 or 32 lanes save little more
    lane_frames: int = 80  # 2.56 s: a block is 12 * 2.56 s + 0.77 s = 31.5 s of audio
    warmup: int = 24  # 0.77 s; longer helps little: the state forgets over tens of seconds

    def __post_init__(self) -> None:
        if self.lanes < 1 or self.lane_frames < 1 or self.warmup < 0:
            raise OptionError(f"VAD lanes need lanes >= 1, lane_frames >= 1, warmup >= 0, not {self}")
        if self.lanes == 1 and self.warmup:
            raise OptionError("one VAD lane continues the carried state: it has no warm-up")

    @property
    def block_frames(self) -> int:
        return self.lanes * self.lane_frames + self.warmup


SEQUENTIAL = LaneLayout(lanes=1, lane_frames=1, warmup=0)
DEFAULT_LAYOUT = SEQUENTIAL  # LaneLayout() is ~2.3x cheaper but moves spans (see the module's doc)


class SpeechProbabilities:
    """Speech probability per FRAME samples, for 16 kHz mono audio pushed in chunks of any size.

    Frames come out a block at a time (layout.block_frames), in order; the same audio in any
    chunking gives the same output, and what is held is one block whatever the audio length.
    """

    def __init__(self, model: str | Path | None = None, layout: LaneLayout = DEFAULT_LAYOUT):
        self._session = _session(str(model or model_path()))
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
        state = np.zeros((2, used, _STATE), np.float32)
        state[:, :1] = self._state
        probs = np.empty((used, steps), np.float32)
        for step in range(steps):
            frames_in = windows[first + step]  # a copy
            if step == 0:
                frames_in[1:, :_CONTEXT] = 0.0  # the fresh lanes' streams start here
            out, state = self._session.run(None, {"input": frames_in, "state": state, "sr": _SR})
            probs[:, step] = out[:, 0]
        # The block's end is lane used-1's last step: its state goes on to the next block.
        self._state = state[:, used - 1 : used].copy()
        self._block[:_CONTEXT] = self._block[_CONTEXT + frames * FRAME - _CONTEXT : _CONTEXT + frames * FRAME]
        self._filled = 0
        return np.concatenate([probs[0], probs[1:, warmup:].reshape(-1)])[:frames]
