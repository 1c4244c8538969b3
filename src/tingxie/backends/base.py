"""The one interface every recognition backend implements, with every optional stage declared.

A backend is loaded once with its options, then asked to transcribe batches of audio segments.
`Backend` names everything the pipeline, the memory planner and the server may ask of it, each
with a type and a default here, so nothing downstream guesses (no `getattr` on a backend). A
backend overrides what it has: Whisper its device and execution, Paraformer also its own VAD,
its text stage over the whole recording, and a torch memory probe (httpx's transport base class
is the model: one declared surface, one mock, tests/ for the fakes).
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Protocol, Sequence

from tingxie.planner.shapes import InputShape, ShapeRule
from tingxie.segments import AudioSegment, SegmentResult, TextSegment

if TYPE_CHECKING:
    from tingxie.memory.probes import MemoryProbe
    from tingxie.options import ModelOptions
    from tingxie.options import DecodeOptions

__all__ = ["Backend", "BackendOutOfMemory", "InputShape", "ShapeRule", "SpeechDetector", "TextStream",
           "is_out_of_memory", "out_of_memory"]

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


class SpeechDetector(Protocol):
    """A streamed VAD: chunks in, closed speech spans out (tingxie.vad.detector.SpeechDetector)."""

    def push(self, chunk) -> list: ...

    def finish(self) -> list: ...

    def earliest_start_s(self) -> float: ...


class TextStream(Protocol):
    """A text stage over a whole recording's results, in time order (Paraformer's punctuation):
    push() returns the output pieces that closed, finish() the rest."""

    def push(self, results: Iterable[SegmentResult]) -> list[TextSegment]: ...

    def finish(self) -> list[TextSegment]: ...


class Backend:
    """Base class of every backend: the required members, and each optional one with its default."""

    # --- required ------------------------------------------------------------------------
    name: str  # what the user asked for: an embedded name, a hub id, a directory
    shape: InputShape  # the input shape the model wants: all the planner needs to know

    def transcribe_batch(self, batch: Sequence[AudioSegment], decode: DecodeOptions | None = None) -> list[SegmentResult]:
        """Return one result per input, in input order. Raise BackendOutOfMemory on OOM.
        decode: this batch's decode options where per_batch_decode is True; None: those it was loaded with."""
        raise NotImplementedError

    # True: transcribe_batch honours a batch's own decode options (language, task, prompt,
    # temperature), so a server batches requests with different ones separately; False: the
    # options it was loaded with are the only ones it can decode with.
    per_batch_decode: bool = False
    # True: with DecodeOptions.token_logprobs, its results carry each token of the text and
    # its log-probability (SegmentResult.logprobs); False: it has none to give.
    token_logprobs: bool = False

    # --- where it runs (the memory profile's key and the batch cap depend on these) -------
    model_path: Path | None = None  # its weights on disk; None: nothing to profile (no memory model)
    device: str = "cpu"  # "cpu", "cuda" or "cuda:N", resolved
    compute_type: str | None = None  # resolved precision, e.g. "int8", "float32"
    threads: int | None = None  # CPU threads it uses
    execution: str | None = None  # how a batch runs (replicas, engines): the peak depends on it
    multilingual: bool = True  # False: an English-only model

    def memory_probe(self) -> MemoryProbe:
        """The probe that sees the memory this backend allocates. Default: the CPU's RSS, or on
        CUDA NVML's device figures (CTranslate2's allocator cannot be asked); a torch backend
        overrides this with torch's own allocator statistics."""
        from tingxie.memory.probes import probe_for

        return probe_for(self.device, engine="ctranslate2")

    def leaner_options(self) -> ModelOptions | None:
        """Options for the same model that need less memory, at some cost in speed (fewer CPU
        replicas side by side, ...), for a budget the current execution does not fit; None
        (default): nothing leaner. The engine reloads with them and measures again."""
        return None

    def profile_key(self) -> dict:
        """What the memory profile depends on, besides the weights and the decode options."""
        return {"device": self.device, "compute_type": self.compute_type, "threads": self.threads,
                "execution": self.execution}

    # --- optional pipeline stages --------------------------------------------------------
    def speech_detector(self) -> SpeechDetector | None:
        """A VAD of the backend's own, replacing tingxie's Silero VAD; None (default): Silero."""
        return None

    def text_stream(self) -> TextStream | None:
        """A fresh text stage over one whole recording's results; None (default): none, each
        segment's text is made by segment_text."""
        return None

    def unload(self) -> None:
        """Free the weights now, however many references to the backend remain (a server
        unloading a model it no longer has room for); the backend is not used again. Default:
        nothing (its memory goes when the last reference does)."""

    def segment_text(self, result: SegmentResult) -> SegmentResult:
        """A segment's output pieces when segments are taken one by one (no whole-recording
        stage, or the server interleaving recordings). Default: the backend's pieces as they are."""
        return result
