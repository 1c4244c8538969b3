"""The one protocol every recognition backend implements.

A backend is loaded once with its options, then asked to transcribe batches of audio segments.
It also describes the input shape its model wants, which is all the planner needs to know
about it: Whisper pads every item to a fixed 30 s window; Paraformer takes variable lengths.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from ..segments import AudioSegment, SegmentResult
from ..shapes import InputShape, ShapeRule

__all__ = ["Backend", "BackendOutOfMemory", "InputShape", "ShapeRule"]


class BackendOutOfMemory(Exception):
    """Raised by a backend when a batch did not fit; the executor splits the batch and retries."""


@runtime_checkable
class Backend(Protocol):
    name: str
    shape: InputShape

    def transcribe_batch(self, batch: Sequence[AudioSegment]) -> list[SegmentResult]:
        """Return one result per input, in input order. Raise BackendOutOfMemory on OOM."""
        ...
