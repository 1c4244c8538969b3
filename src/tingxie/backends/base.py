"""The one protocol every recognition backend implements.

A backend is loaded once with its options, then asked to transcribe batches of audio segments.
It also describes the input shape its model wants, which is all the planner needs to know
about it: Whisper pads every item to a fixed 30 s window; Paraformer takes variable lengths.
"""

from __future__ import annotations

import traceback
from typing import Protocol, Sequence, runtime_checkable

from ..segments import AudioSegment, SegmentResult
from ..shapes import InputShape, ShapeRule

__all__ = ["Backend", "BackendOutOfMemory", "InputShape", "ShapeRule", "is_out_of_memory", "out_of_memory"]

# How the engines word a failed allocation: CUDA and torch ("out of memory", "can't allocate
# memory"), C++ new inside CTranslate2 ("bad_alloc"), Windows ("not enough memory").
_OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "bad_alloc", "not enough memory")


class BackendOutOfMemory(Exception):
    """Raised by a backend when a batch did not fit; the executor splits the batch and retries."""


def out_of_memory(error: BaseException) -> BackendOutOfMemory:
    """The BackendOutOfMemory for an engine's out-of-memory error, raised `from` it.

    The failed batch's frames are cleared first: the error's traceback holds them, their
    locals hold the batch's tensors, and the executor keeps the error while it retries the
    halves. On a GPU the failed batch's memory then stayed in use and every smaller retry ran
    out too, down to a single segment that fitted alone (seen on an H100, tests/test_cuda.py).
    """
    traceback.clear_frames(error.__traceback__)
    return BackendOutOfMemory(str(error))


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an engine's error means the batch did not fit in memory (and a smaller one may)."""
    if isinstance(error, MemoryError):
        return True
    message = str(error).lower()
    return isinstance(error, RuntimeError) and any(words in message for words in _OUT_OF_MEMORY)


@runtime_checkable
class Backend(Protocol):
    name: str
    shape: InputShape

    def transcribe_batch(self, batch: Sequence[AudioSegment]) -> list[SegmentResult]:
        """Return one result per input, in input order. Raise BackendOutOfMemory on OOM."""
        ...

    # Optional, looked up with getattr by the pipeline and the server:
    #   speech_detector() -> a detector replacing tingxie's Silero VAD, or None;
    #   text_stream() -> a stage over the whole recording's results (punctuation), or None;
    #   segment_text(result) -> the result's output pieces when segments are taken one by one
    #     (no whole-recording stage, or the server interleaving recordings).
