"""The default planner: batches as large as a memory budget allows, with little padding."""

from __future__ import annotations

import math
from typing import Callable, Iterable

from tingxie.errors import OutOfMemoryError
from tingxie.planner.shapes import InputShape, ShapeRule
from tingxie.planner.memory_model import MemoryModel, format_bytes
from tingxie.planner.constraint import DEFAULT_MAX_PADDING_WASTE, BudgetConstraint
from tingxie.planner.plan import Batch, Plan, PlanItem, check_unique_ids


def plan_budgeted(
    items: Iterable[PlanItem],
    shape: InputShape,
    memory_model: MemoryModel,
    budget_bytes: int,
    max_batch_size: int,
    *,
    max_padded_s: float | None = None,
    max_padding_waste: float = DEFAULT_MAX_PADDING_WASTE,
) -> Plan:
    """Batches whose predicted peak memory stays within budget_bytes.

    Every batch has at most max_batch_size items and, when it has more than one, at most
    max_padded_s padded seconds (the executor lowers both after an out-of-memory error for the
    rest of a run). A lone item is never refused for max_padded_s: it cannot be split further,
    so only the budget decides whether it runs.

    FIXED_WINDOW (Whisper): every item costs one window whatever its length, so sorting gains
    nothing; items stay in the given (time) order, cut into runs of the largest size that fits.

    VARIABLE (Paraformer): items are sorted longest first (ties by id) and each batch starts at
    the longest item left, which fixes its padded length T; shorter items join while the batch
    still fits the budget, the size caps and the padding-waste cap. Batches therefore come out
    longest first, so the batch most likely to exceed memory runs first and fails early.

    Raises OutOfMemoryError, naming the smallest budget that would do, when one item alone
    does not fit.
    """
    items = check_unique_ids(items)
    constraint = BudgetConstraint(shape, memory_model, budget_bytes, max_batch_size, max_padded_s, max_padding_waste)
    speech_s = math.fsum(item.duration for item in items)  # exact, so independent of order
    if not items:
        return Plan(batches=(), mode="budgeted", speech_s=speech_s)

    fits = constraint.fits
    # Predictions never fall as T grows, so if the longest item fits alone, every item does.
    longest_s = shape.max_item_s if shape.rule is ShapeRule.FIXED_WINDOW else max(i.duration for i in items)
    if not fits(1, longest_s):
        needed = memory_model.predict(1, longest_s)
        raise OutOfMemoryError(
            f"memory budget {format_bytes(budget_bytes)} is below the smallest batch "
            f"(one {longest_s:.1f} s item needs {format_bytes(needed)})"
        )

    if shape.rule is ShapeRule.FIXED_WINDOW:
        groups = _fixed_window_groups(items, shape.max_item_s, fits)
    else:
        groups = _variable_groups(items, fits, max_padding_waste)

    batches = []
    for group in groups:
        durations = [item.duration for item in group]
        item_s = shape.max_item_s if shape.rule is ShapeRule.FIXED_WINDOW else max(durations)
        batches.append(
            Batch(
                item_ids=tuple(item.id for item in group),
                padded_s=shape.padded_seconds(durations),
                predicted_bytes=memory_model.predict(len(group), item_s),
            )
        )
    return Plan(batches=tuple(batches), mode="budgeted", speech_s=speech_s)


Fits = Callable[[int, float], bool]


def _fixed_window_groups(items: list[PlanItem], window_s: float, fits: Fits) -> list[list[PlanItem]]:
    size = 1
    while size < len(items) and fits(size + 1, window_s):  # predictions never fall with size, so stop at the first miss
        size += 1
    return [items[i : i + size] for i in range(0, len(items), size)]


def _variable_groups(items: list[PlanItem], fits: Fits, max_waste: float) -> list[list[PlanItem]]:
    order = sorted(items, key=lambda item: (-item.duration, item.id))
    groups: list[list[PlanItem]] = []
    i = 0
    while i < len(order):
        head = order[i]
        longest = head.duration
        group, speech = [head], head.duration
        i += 1
        # Later items are never longer, so T stays `longest`; memory and waste only grow as
        # the group grows, so the first item that does not fit ends the group.
        while i < len(order):
            size, candidate = len(group) + 1, order[i]
            waste = 1 - (speech + candidate.duration) / (size * longest) if longest > 0 else 0.0
            if waste > max_waste + 1e-12 or not fits(size, longest):  # slack for float rounding
                break
            group.append(candidate)
            speech += candidate.duration
            i += 1
        groups.append(group)
    return groups
