"""How a model wants its input shaped. Pure Python: the planner imports this, not the backends."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ShapeRule(enum.Enum):
    FIXED_WINDOW = "fixed_window"  # every item is padded to max_item_s (Whisper's 30 s window)
    VARIABLE = "variable"  # items are padded to the longest in their batch (Paraformer)


@dataclass(frozen=True)
class InputShape:
    rule: ShapeRule
    max_item_s: float  # the longest single item the model accepts

    def padded_seconds(self, durations: list[float] | tuple[float, ...]) -> float:
        """Seconds of input the model computes on for a batch of items of these durations."""
        if not durations:
            return 0.0
        if self.rule is ShapeRule.FIXED_WINDOW:
            return len(durations) * self.max_item_s
        return len(durations) * max(durations)
