"""A backend with no model, for fast tests of everything around recognition.

It 'recognises' a segment as a deterministic text derived from its place and length, can be
told to run out of memory above a batch cost, and records every batch it was given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from tingxie.segments import AudioSegment, SegmentResult, TextSegment
from tingxie.backends.base import Backend, BackendOutOfMemory, InputShape, ShapeRule


def describe_segment(segment: AudioSegment) -> str:
    return f"segment {segment.index} from {segment.start:.2f} to {segment.end:.2f}"


@dataclass
class FakeBackend(Backend):
    name: str = "fake"
    shape: InputShape = InputShape(ShapeRule.VARIABLE, max_item_s=30.0)
    text_for: Callable[[AudioSegment], str] = describe_segment
    # Raise BackendOutOfMemory when batch cost (items x padded seconds) exceeds this.
    oom_above_cost_s: float | None = None
    batches: list[tuple[int, ...]] = field(default_factory=list)

    def batch_cost_s(self, batch: Sequence[AudioSegment]) -> float:
        return self.shape.padded_seconds([s.duration for s in batch])

    def transcribe_batch(self, batch: Sequence[AudioSegment], decode=None) -> list[SegmentResult]:
        if self.oom_above_cost_s is not None and self.batch_cost_s(batch) > self.oom_above_cost_s:
            raise BackendOutOfMemory(f"fake OOM: batch cost {self.batch_cost_s(batch):.1f} s")
        self.batches.append(tuple(s.index for s in batch))
        return [
            SegmentResult(s.index, (TextSegment(s.start, s.end, self.text_for(s)),), language="en")
            for s in batch
        ]
