"""What one batch may hold: the planner's rule as an object callers can ask (lhotse's
SamplingConstraint is the model).

The planners build batches with these rules, and the engine asks the same objects directly:
streaming sizes its windows with `capacity`, the server grows a cross-request batch with
`longest_prefix`, instead of planning dummy input to reverse-engineer the answer. Pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from tingxie.planner.memory_model import MemoryModel
from tingxie.planner.shapes import InputShape, ShapeRule

UNMEASURED = MemoryModel(fixed=0.0, per_item_s=0.0, per_item_s2=0.0)  # a backend with no profile: every batch is free
# A batch of variable-length items may be at most this much padding. Padded seconds cost the
# same compute as speech, so waste is lost throughput; an extra batch costs one more launch,
# which is small next to seconds of audio. A batch the cap closes is followed by one whose
# longest item is under 0.8 of its own, so lengths from 0.25 s to 30 s cost at most about 21
# extra batches (log 120 / log 1.25) over what the memory budget alone would give.
DEFAULT_MAX_PADDING_WASTE = 0.2


class BatchConstraint(Protocol):
    shape: InputShape

    def fits(self, size: int, item_s: float) -> bool:
        """Whether `size` items, each padded to `item_s` seconds, may run as one batch."""

    def fits_batch(self, durations: Sequence[float]) -> bool:
        """Whether items of these durations, in any order, may run as one batch."""


def _padded_item_s(shape: InputShape, durations: Sequence[float]) -> float:
    return shape.max_item_s if shape.rule is ShapeRule.FIXED_WINDOW else max(durations)


@dataclass(frozen=True)
class BudgetConstraint:
    """A batch's predicted peak within the budget, at most max_batch_size items, at most
    max_padded_s padded seconds and (variable lengths) at most max_padding_waste padding. A lone
    item is never refused for the caps: it cannot be split further, only the budget decides."""

    shape: InputShape
    memory_model: MemoryModel
    budget_bytes: int
    max_batch_size: int
    max_padded_s: float | None = None
    max_padding_waste: float = DEFAULT_MAX_PADDING_WASTE

    def __post_init__(self) -> None:
        if self.budget_bytes <= 0:
            raise ValueError(f"budget_bytes must be positive, not {self.budget_bytes}")
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, not {self.max_batch_size}")
        if self.max_padded_s is not None and not self.max_padded_s > 0:
            raise ValueError(f"max_padded_s must be positive, not {self.max_padded_s}")
        if not 0 <= self.max_padding_waste <= 1:
            raise ValueError(f"max_padding_waste must be between 0 and 1, not {self.max_padding_waste}")

    def fits(self, size: int, item_s: float) -> bool:
        if size == 1:
            return self.memory_model.predict(1, item_s) <= self.budget_bytes
        return (
            size <= self.max_batch_size
            and (self.max_padded_s is None or size * item_s <= self.max_padded_s)
            and self.memory_model.predict(size, item_s) <= self.budget_bytes
        )

    def waste_ok(self, durations: Sequence[float]) -> bool:
        if self.shape.rule is ShapeRule.FIXED_WINDOW or len(durations) < 2:
            return True
        longest = max(durations)
        waste = 1 - sum(durations) / (len(durations) * longest) if longest > 0 else 0.0
        return waste <= self.max_padding_waste + 1e-12  # slack for float rounding

    def fits_batch(self, durations: Sequence[float]) -> bool:
        if not durations:
            return True
        return self.fits(len(durations), _padded_item_s(self.shape, durations)) and self.waste_ok(durations)

    def capacity(self, item_s: float | None = None) -> int:
        """The most items of `item_s` seconds (default: the longest the model takes) one batch
        may hold; 0 when not even one fits. Predictions never fall as a batch grows, so the
        first size that does not fit ends the search."""
        item_s = self.shape.max_item_s if item_s is None else item_s
        if not self.fits(1, item_s):
            return 0
        size = 1
        while size < self.max_batch_size and self.fits(size + 1, item_s):
            size += 1
        return size


@dataclass(frozen=True)
class FunasrConstraint:
    """FunASR's batch_size_s rule for one batch: longest item x batch size within batch_size_s
    seconds, and no item at or over the threshold in a batch of several (planner/funasr_compat.py
    reproduces FunASR's whole grouping; this is the rule a batch built elsewhere must keep)."""

    shape: InputShape
    batch_size_s: float
    batch_threshold_s: float | None = None
    max_batch_size: int = 1 << 30

    def fits(self, size: int, item_s: float) -> bool:
        if size == 1:
            return True
        threshold = 60.0 if self.batch_threshold_s is None else self.batch_threshold_s
        return size <= self.max_batch_size and item_s < threshold and size * item_s <= self.batch_size_s

    def fits_batch(self, durations: Sequence[float]) -> bool:
        if len(durations) < 2:
            return True
        return self.fits(len(durations), max(durations))

    def capacity(self, item_s: float | None = None) -> int:
        item_s = self.shape.max_item_s if item_s is None else item_s
        size = 1
        while size < min(self.max_batch_size, 4096) and self.fits(size + 1, item_s):
            size += 1
        return size


def longest_prefix(constraint: BatchConstraint, durations: Sequence[float]) -> int:
    """How many of these items, taken in their order, run as one batch (at least 1 when any
    are given: a lone item always runs, out-of-memory retries decide the rest). One pass: the
    padded length and the speech grow with each item, nothing is re-planned."""
    if not durations:
        return 0
    size = 1
    for k in range(2, len(durations) + 1):
        if not constraint.fits_batch(durations[:k]):
            break
        size = k
    return size
