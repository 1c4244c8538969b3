"""The planner's output: plain frozen records the executor runs and the reports print."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from tingxie.planner.shapes import InputShape


@dataclass(frozen=True)
class PlanItem:
    """One segment to recognise: its id (the caller's index) and its length in seconds."""

    id: int
    duration: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.duration) and self.duration >= 0):
            raise ValueError(f"segment {self.id} has duration {self.duration!r}; it must be finite and >= 0")


@dataclass(frozen=True)
class Batch:
    """Items run together. padded_s counts the seconds the model computes on, padding included."""

    item_ids: tuple[int, ...]
    padded_s: float
    predicted_bytes: int | None = None  # None where no memory model was used (FunASR mode)


@dataclass(frozen=True)
class Plan:
    """All batches of one recording. Their order is the order to run them in.

    speech_s is the summed duration of the items, filled in by the planners; a Plan built by
    hand without it reports all of its padded seconds as waste.
    """

    batches: tuple[Batch, ...]
    mode: str  # "funasr" or "budgeted"
    speech_s: float = 0.0

    @property
    def item_count(self) -> int:
        return sum(len(b.item_ids) for b in self.batches)

    @property
    def padded_s(self) -> float:
        return sum(b.padded_s for b in self.batches)

    @property
    def padding_waste(self) -> float:
        """The fraction of computed seconds that is padding, not speech."""
        return padding_waste(self.speech_s, self.padded_s)


def padding_waste(speech_s: float, padded_s: float) -> float:
    """The share of padded_s (the seconds a model computed on) that was not speech_s: lost work."""
    return 1.0 - speech_s / padded_s if padded_s > 0 else 0.0


@dataclass
class PaddingTally:
    """Speech and padded seconds of the batches actually run (the executor's splits included)."""

    speech_s: float = 0.0
    padded_s: float = 0.0

    def add(self, durations: list[float], shape: InputShape) -> None:
        self.speech_s += math.fsum(durations)
        self.padded_s += shape.padded_seconds(durations)

    @property
    def waste(self) -> float:
        return padding_waste(self.speech_s, self.padded_s)


def check_unique_ids(items: Iterable[PlanItem]) -> list[PlanItem]:
    """Results are matched back by id, so two items with one id would lose a result."""
    items = list(items)
    seen: set[int] = set()
    for item in items:
        if item.id in seen:
            raise ValueError(f"segment id {item.id} appears more than once")
        seen.add(item.id)
    return items
