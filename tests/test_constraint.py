"""The planner's batch rule as a query: capacity and longest prefix, against what the planner plans."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tingxie.errors import OutOfMemoryError
from tingxie.planner import BudgetConstraint, FunasrConstraint, MemoryModel, PlanItem, longest_prefix, plan_budgeted
from tingxie.planner.shapes import InputShape, ShapeRule

WHISPER = InputShape(ShapeRule.FIXED_WINDOW, 30.0)
PARAFORMER = InputShape(ShapeRule.VARIABLE, 60.0)
MiB = 1024**2
MODEL = MemoryModel(fixed=100 * MiB, per_item_s=1 * MiB, per_item_s2=0.01 * MiB)


def test_capacity_of_whisper_windows_is_exact():
    # one 30 s window: 100 + 30 + 9 = 139 MiB; each more window adds 39 MiB
    constraint = BudgetConstraint(WHISPER, MODEL, 139 * MiB + 3 * 39 * MiB, max_batch_size=8)
    assert constraint.capacity() == 4
    assert BudgetConstraint(WHISPER, MODEL, 138 * MiB, 8).capacity() == 0  # not even one window
    assert BudgetConstraint(WHISPER, MODEL, 10_000 * MiB, 8).capacity() == 8  # the cap binds


def test_longest_prefix_stops_at_the_padding_cap_and_the_budget():
    constraint = BudgetConstraint(PARAFORMER, MODEL, 10_000 * MiB, max_batch_size=16)
    # 10 s then 10 s fine; a 1 s item would make the batch 1 - 21/30 = 30 % padding (cap 20 %)
    assert longest_prefix(constraint, [10.0, 10.0, 1.0, 10.0]) == 2
    assert longest_prefix(constraint, [50.0]) == 1
    assert longest_prefix(constraint, []) == 0
    tight = BudgetConstraint(PARAFORMER, MODEL, 100 * MiB + 40 * MiB, max_batch_size=16)
    assert longest_prefix(tight, [10.0, 10.0, 10.0, 10.0]) == 3  # 4 x 10 s: 100 + 40 + 4 MiB > 140


def test_funasr_rule_for_one_batch():
    constraint = FunasrConstraint(PARAFORMER, batch_size_s=60)
    assert longest_prefix(constraint, [10.0, 20.0, 20.0, 5.0]) == 3  # 3 x 20 = 60; 4 x 20 = 80
    assert longest_prefix(constraint, [70.0, 1.0]) == 1  # at or over the 60 s threshold: alone
    assert constraint.capacity(15.0) == 4


durations = st.lists(st.floats(min_value=0.3, max_value=60.0, allow_nan=False), min_size=1, max_size=24)


@settings(max_examples=200, deadline=None)
@given(durations, st.integers(min_value=120, max_value=4000), st.integers(min_value=1, max_value=16),
       st.sampled_from([WHISPER, PARAFORMER]))
def test_longest_prefix_is_what_the_planner_runs_as_one_batch(values, budget_mib, cap, shape):
    """The query agrees with planning each prefix and asking whether it came out as one batch
    (what the server did before the query existed)."""
    if shape is WHISPER:
        values = [min(v, 30.0) for v in values]
    constraint = BudgetConstraint(shape, MODEL, budget_mib * MiB, cap)
    expected = 1
    for k in range(2, len(values) + 1):
        items = [PlanItem(i, d) for i, d in enumerate(values[:k])]
        try:
            plan = plan_budgeted(items, shape, MODEL, budget_mib * MiB, cap)
        except OutOfMemoryError:
            break
        if len(plan.batches) != 1:
            break
        expected = k
    assert longest_prefix(constraint, values) == expected


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=100, max_value=4000), st.integers(min_value=1, max_value=64))
def test_capacity_is_the_largest_batch_of_a_plan_of_full_windows(budget_mib, cap):
    constraint = BudgetConstraint(WHISPER, MODEL, budget_mib * MiB, cap)
    items = [PlanItem(i, 30.0) for i in range(cap)]
    try:
        plan = plan_budgeted(items, WHISPER, MODEL, budget_mib * MiB, cap)
    except OutOfMemoryError:
        assert constraint.capacity() == 0
        return
    assert constraint.capacity() == max(len(b.item_ids) for b in plan.batches)


def test_bad_constraints_are_refused():
    with pytest.raises(ValueError):
        BudgetConstraint(WHISPER, MODEL, 0, 8)
    with pytest.raises(ValueError):
        BudgetConstraint(WHISPER, MODEL, MiB, 0)
