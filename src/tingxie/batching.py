"""Choose the batches for a list of segments (the bridge from the pipeline to the planner)."""

from __future__ import annotations

from typing import Iterator, Sequence

from .options import BatchOptions
from .segments import AudioSegment
from .shapes import InputShape


def plan_for(segments: Sequence[AudioSegment], shape: InputShape, options: BatchOptions) -> Iterator[tuple[int, ...]]:
    """Yield batches as tuples of segment indices, in time order of their first item."""
    ids = [s.index for s in segments]
    size = options.max_batch_size
    for start in range(0, len(ids), size):
        yield tuple(ids[start : start + size])
