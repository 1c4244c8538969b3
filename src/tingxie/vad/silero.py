"""Silero VAD's ONNX model (never torch) turned into one speech probability per 32 ms frame.

The default model is the Silero VAD v6 export that faster-whisper ships
(faster_whisper/assets/silero_vad_v6.onnx), so a plain `pip install` has it. It takes a
sequence of frames and the LSTM's h and c: one call runs a whole block, the encoder batched
inside the graph. Silero's own file (silero_vad.onnx from the silero-vad package, one frame and
a `state` per call) also works when passed as a path: its encoder does not need the state, so
it is cut off (silero_graph) and run on a block of frames in one call; only the decoder goes
frame by frame, exactly the whole model's probabilities. The two files are different trainings:
their probabilities differ (mean 0.07) but their speech spans nearly agree (docs/benchmarks.md,
issue 15).

Lanes (LaneLayout with lanes > 1) also run several stretches of the stream side by side. A lane
that does not continue the carried state starts afresh a little earlier (the warm-up), but the
model's state forgets that start only over tens of seconds: its probabilities differ by up to
~0.7 and spans move, so lanes are measured, not the default.
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
    """faster-whisper's Silero VAD file, found without importing faster_whisper (it loads CTranslate2)."""
    spec = importlib.util.find_spec("faster_whisper")
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / "assets" / "silero_vad_v6.onnx"
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError("Silero VAD model not found (faster_whisper/assets/silero_vad_v6.onnx): "
                             "reinstall tingxie's dependency faster-whisper (pip install --force-reinstall faster-whisper)")


def _session(model: str | bytes) -> onnxruntime.InferenceSession:
    # One thread: the model is tiny and sequential; the cores belong to the recogniser.
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # the cut parts keep constants they do not use: no warnings
    return onnxruntime.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def _lane_windows(windows: np.ndarray, first: np.ndarray, steps: int) -> np.ndarray:
    """(lanes, steps, context + frame): each lane's windows; lanes after the first start a
    stream of their own there, so their first window has no context."""
    lanes = windows[first[:, None] + np.arange(steps)]
    lanes[1:, 0, :_CONTEXT] = 0.0
    return lanes


class SileroModel:
    """run(windows, first, steps, state) -> (probabilities (lanes, steps), state): lane k reads
    windows[first[k] : first[k] + steps]; lane 0 continues `state`, the others start afresh.

    Two kinds of file: a sequence model (inputs input, h, c: faster-whisper's export), run one
    call per lane; or Silero's own (inputs input, state, sr), cut in two where possible (encode
    any number of frames at once, decode one frame per lane per call), else the whole model
    frame by frame.
    """

    def __init__(self, path: str):
        self.whole = _session(path)
        self.is_sequence = {i.name for i in self.whole.get_inputs()} >= {"input", "h", "c"}
        self.is_cut = False
        if self.is_sequence:
            return
        try:
            encoder, decoder, features = cut_encoder(Path(path).read_bytes())
            self._encoder, self._decoder, self._features = _session(encoder), _session(decoder), features
        except Exception:  # noqa: BLE001 (another model version: any failure to cut means the whole model)
            return
        self.is_cut = self._matches_whole()

    def run(self, windows: np.ndarray, first: np.ndarray, steps: int, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.is_sequence:
            return self._run_sequence(_lane_windows(windows, first, steps), state)
        # Lanes overlap by the warm-up: encode the block's windows once, fresh starts apart.
        features = self.encode(windows[: first[-1] + steps])
        fresh = windows[first[1:]]  # a copy: the fresh lanes' first frames, their streams starting there
        fresh[:, :_CONTEXT] = 0.0
        fresh_features = self.encode(fresh) if len(fresh) else None
        probs = np.empty((len(first), steps), np.float32)
        for step in range(steps):
            step_features = features[first + step]
            if step == 0 and fresh_features is not None:
                step_features[1:] = fresh_features
            probs[:, step], state = self.decode(step_features, state)
        return probs, state

    def _run_sequence(self, lanes: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # The export takes one stream (h and c of batch 1): one call per lane, its frames a sequence.
        probs = np.empty(lanes.shape[:2], np.float32)
        state = state.copy()
        for lane, frames in enumerate(lanes):
            out, h, c = self.whole.run(None, {"input": frames, "h": state[0:1, lane : lane + 1],
                                              "c": state[1:2, lane : lane + 1]})
            probs[lane] = out.reshape(-1)
            state[0, lane], state[1, lane] = h[0, 0], c[0, 0]
        return probs, state

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
        state = np.zeros((2, used, _STATE), np.float32)
        state[:, :1] = self._state
        probs, state = self.model.run(windows, first, steps, state)
        # The block's end is lane used-1's last step: its state goes on to the next block.
        self._state = state[:, used - 1 : used].copy()
        self._block[:_CONTEXT] = self._block[_CONTEXT + frames * FRAME - _CONTEXT : _CONTEXT + frames * FRAME]
        self._filled = 0
        return np.concatenate([probs[0], probs[1:, warmup:].reshape(-1)])[:frames]
