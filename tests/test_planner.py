"""The batch planners: exact batches on hand-made segment lists, then properties on random ones."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tingxie.errors import OutOfMemoryError
from tingxie.planner import Batch, MemoryModel, Plan, PlanItem, plan_budgeted, plan_funasr
from tingxie.planner.shapes import InputShape, ShapeRule

WHISPER = InputShape(ShapeRule.FIXED_WINDOW, 30.0)
PARAFORMER = InputShape(ShapeRule.VARIABLE, 60.0)
MiB = 1024**2


def items_of(*durations: float) -> list[PlanItem]:
    return [PlanItem(i, d) for i, d in enumerate(durations)]


def ids(plan: Plan) -> list[tuple[int, ...]]:
    return [b.item_ids for b in plan.batches]


# --- FunASR's loop, transcribed independently -------------------------------------------------
# A line-by-line rendering of AutoModel.inference_with_vad's batching (FunASR v1.4.3,
# funasr/auto/auto_model.py), on millisecond lengths. Kept deliberately naive: it is the
# reference plan_funasr is checked against.


def funasr_reference(lengths_ms: list[int], batch_size_s: float, batch_size_threshold_s: float = 60) -> list[list[int]]:
    batch_size = max(int(batch_size_s) * 1000, 1)
    batch_size_threshold_ms = int(batch_size_threshold_s) * 1000
    vadsegments = [[0, length] for length in lengths_ms]  # [beg_ms, end_ms]; only lengths matter
    n = len(vadsegments)
    data_with_index = [(vadsegments[i], i) for i in range(n)]
    sorted_data = sorted(data_with_index, key=lambda x: x[0][1] - x[0][0])
    if not len(sorted_data):
        return []
    batch_size = max(batch_size, sorted_data[0][0][1] - sorted_data[0][0][0])
    out = []
    beg_idx = 0
    max_len_in_batch = 0
    end_idx = 1
    for j in range(n):
        sample_length = sorted_data[j][0][1] - sorted_data[j][0][0]
        potential_batch_length = max(max_len_in_batch, sample_length) * (j + 1 - beg_idx)
        if j < n - 1 and sample_length < batch_size_threshold_ms and potential_batch_length < batch_size:
            max_len_in_batch = max(max_len_in_batch, sample_length)
            end_idx += 1
            continue
        out.append([index for _, index in sorted_data[beg_idx:end_idx]])
        beg_idx = end_idx
        end_idx += 1
        max_len_in_batch = sample_length
    return out


# --- FunASR mode: hand cases --------------------------------------------------------------------


def test_funasr_sorts_ascending_and_the_last_segment_closes_the_batch():
    plan = plan_funasr(items_of(3, 2, 4, 1), batch_size_s=10, batch_threshold_s=None, shape=PARAFORMER)
    # 1+2+3 s padded to 3 s = 9 s < 10 s; the 4 s segment is last, so it joins regardless.
    assert ids(plan) == [(3, 1, 0, 2)]
    assert plan.batches[0].padded_s == 16.0  # 4 items x 4 s: over the 10 s budget
    assert plan.mode == "funasr" and plan.batches[0].predicted_bytes is None


def test_funasr_the_segment_that_reaches_the_budget_is_included():
    # Five 2 s segments make 10 s, not below the 10 s budget: the fifth closes the batch.
    assert ids(plan_funasr(items_of(*[2] * 7), 10, None, PARAFORMER)) == [(0, 1, 2, 3, 4), (5, 6)]
    # The overflowing segment can overshoot far: three 1 s and a 5 s pad to 20 s on a 6 s budget.
    plan = plan_funasr(items_of(1, 1, 1, 5, 5), 6, None, PARAFORMER)
    assert ids(plan) == [(0, 1, 2, 3), (4,)]
    assert [b.padded_s for b in plan.batches] == [20.0, 5.0]


def test_funasr_threshold_closes_the_batch_with_the_long_segment_in_it():
    plan = plan_funasr(items_of(10, 70, 80, 20), 300, 60, PARAFORMER)
    # 70 s reaches the 60 s threshold: it joins the 10 s and 20 s ones and closes their batch;
    # every later (longer) segment then runs alone.
    assert ids(plan) == [(0, 3, 1), (2,)]
    assert plan.batches[0].padded_s == 210.0


def test_funasr_ties_keep_input_order():
    assert ids(plan_funasr(items_of(2, 1, 2, 1), 3, None, PARAFORMER)) == [(1, 3, 0), (2,)]


def test_funasr_truncates_seconds_to_whole_numbers():
    five = items_of(*[0.3] * 5)
    assert ids(plan_funasr(five, 1.9, None, PARAFORMER)) == [(0, 1, 2, 3), (4,)]  # budget 1000 ms
    assert ids(plan_funasr(five, 2, None, PARAFORMER)) == [(0, 1, 2, 3, 4)]
    # A threshold under 1 s truncates to 0 ms: no segment is below it, so all run alone.
    assert ids(plan_funasr(five, 300, 0.5, PARAFORMER)) == [(i,) for i in range(5)]


def test_funasr_default_threshold_is_60_s():
    plan = plan_funasr(items_of(59, 59.999, 60, 61), 1000, None, PARAFORMER)
    assert ids(plan) == [(0, 1, 2), (3,)]


def test_funasr_fixed_window_counts_whole_windows_and_keeps_ids():
    items = [PlanItem(40, 5.0), PlanItem(7, 1.0), PlanItem(12, 3.0)]
    plan = plan_funasr(items, 300, None, WHISPER)
    assert ids(plan) == [(7, 12, 40)]
    assert plan.padded_s == 90.0 and plan.speech_s == 9.0
    assert plan.padding_waste == pytest.approx(0.9)


def test_funasr_empty():
    plan = plan_funasr([], 300, None, WHISPER)
    assert plan.batches == () and plan.item_count == 0 and plan.padding_waste == 0.0


# --- Budgeted mode: hand cases ------------------------------------------------------------------

LINEAR = MemoryModel(fixed=0, per_item_s=1, per_item_s2=0)  # one byte per padded second


def test_budgeted_fixed_window_keeps_time_order_in_runs_of_the_largest_size_that_fits():
    model = MemoryModel(fixed=100 * MiB, per_item_s=1 * MiB, per_item_s2=0)  # 100 MiB + 30 MiB per item
    items = items_of(1, 30, 2, 29, 3, 28, 4)
    plan = plan_budgeted(items, WHISPER, model, budget_bytes=190 * MiB, max_batch_size=16)
    assert ids(plan) == [(0, 1, 2), (3, 4, 5), (6,)]
    assert [b.predicted_bytes for b in plan.batches] == [190 * MiB, 190 * MiB, 130 * MiB]
    assert [b.padded_s for b in plan.batches] == [90.0, 90.0, 30.0]
    assert ids(plan_budgeted(items, WHISPER, model, 190 * MiB, max_batch_size=2)) == [(0, 1), (2, 3), (4, 5), (6,)]
    assert ids(plan_budgeted(items, WHISPER, model, 190 * MiB, 16, max_padded_s=60)) == [(0, 1), (2, 3), (4, 5), (6,)]
    # A ceiling below one window still lets single items run: they cannot be split further.
    assert ids(plan_budgeted(items, WHISPER, model, 190 * MiB, 16, max_padded_s=20)) == [(i,) for i in range(7)]


def test_budgeted_variable_batches_longest_first_with_capped_padding():
    items = items_of(5, 4.5, 4.8, 1, 1, 1, 1, 1, 10)
    plan = plan_budgeted(items, PARAFORMER, LINEAR, budget_bytes=20, max_batch_size=16)
    # 10 s alone: with the 5 s item the batch would be 25 % padding, over the 20 % cap.
    # 5, 4.8, 4.5 fit 15 bytes; a 1 s item would fit 20 bytes but make the batch 23.5 % padding.
    assert ids(plan) == [(8,), (0, 2, 1), (3, 4, 5, 6, 7)]
    assert [b.padded_s for b in plan.batches] == [10.0, 15.0, 5.0]
    assert [b.predicted_bytes for b in plan.batches] == [10, 15, 5]
    assert plan.mode == "budgeted" and plan.speech_s == pytest.approx(29.3)
    uncapped = plan_budgeted(items, PARAFORMER, LINEAR, 20, 16, max_padding_waste=1.0)
    assert ids(uncapped) == [(8, 0), (2, 1, 3, 4), (5, 6, 7)]  # the budget alone decides
    assert ids(plan_budgeted(items, PARAFORMER, LINEAR, 20, 2)) == [(8,), (0, 2), (1,), (3, 4), (5, 6), (7,)]


def test_budgeted_out_of_memory_names_the_minimum():
    model = MemoryModel(fixed=400 * MiB, per_item_s=0.41 * MiB, per_item_s2=0)  # 412.3 MiB at 30 s
    with pytest.raises(OutOfMemoryError) as err:
        plan_budgeted(items_of(3.0), WHISPER, model, budget_bytes=100 * MiB, max_batch_size=16)
    assert str(err.value) == "memory budget 100.0 MiB is below the smallest batch (one 30.0 s item needs 412.3 MiB)"
    with pytest.raises(OutOfMemoryError, match=r"one 12\.5 s item needs 13 B"):
        plan_budgeted(items_of(3.0, 12.5), PARAFORMER, LINEAR, budget_bytes=12, max_batch_size=16)


def test_budgeted_rejects_bad_arguments():
    with pytest.raises(ValueError):
        plan_budgeted(items_of(1), WHISPER, LINEAR, budget_bytes=0, max_batch_size=4)
    with pytest.raises(ValueError):
        plan_budgeted(items_of(1), WHISPER, LINEAR, budget_bytes=100, max_batch_size=0)
    with pytest.raises(ValueError, match="more than once"):
        plan_budgeted([PlanItem(1, 1.0), PlanItem(1, 2.0)], WHISPER, LINEAR, 100, 4)
    with pytest.raises(ValueError):
        PlanItem(0, -1.0)


def test_plan_totals():
    plan = Plan(batches=(Batch((0, 1), 10.0), Batch((2,), 4.0)), mode="budgeted", speech_s=7.0)
    assert plan.item_count == 3 and plan.padded_s == 14.0 and plan.padding_waste == 0.5


# --- Properties -------------------------------------------------------------------------------

# Tenths of seconds, few distinct values, so ties and equal lengths are common.
durations = st.lists(st.integers(0, 300).map(lambda t: t / 10), max_size=60)
shapes = st.sampled_from([WHISPER, PARAFORMER])
models = st.builds(
    MemoryModel,
    fixed=st.integers(0, 1000),
    per_item_s=st.integers(0, 100),
    per_item_s2=st.integers(0, 10),
)


def assert_partition(plan: Plan, items: list[PlanItem]) -> None:
    seen = [i for b in plan.batches for i in b.item_ids]
    assert sorted(seen) == sorted(item.id for item in items)  # none dropped, none twice
    assert all(b.item_ids for b in plan.batches)
    assert plan.item_count == len(items)


@settings(max_examples=200, deadline=None)
@given(
    lengths_ms=st.lists(st.one_of(st.integers(0, 90_000), st.sampled_from([500, 1000, 30_000, 60_000])), max_size=50),
    batch_size_s=st.one_of(st.integers(1, 400), st.floats(0.1, 400)),
    threshold_s=st.one_of(st.none(), st.integers(1, 100), st.floats(0.1, 100)),
    shape=shapes,
)
def test_funasr_equals_the_reference_loop(lengths_ms, batch_size_s, threshold_s, shape):
    items = items_of(*(ms / 1000 for ms in lengths_ms))
    plan = plan_funasr(items, batch_size_s, threshold_s, shape)
    expected = funasr_reference(lengths_ms, batch_size_s, 60 if threshold_s is None else threshold_s)
    assert [list(b) for b in ids(plan)] == expected
    assert_partition(plan, items)
    assert plan == plan_funasr(items, batch_size_s, threshold_s, shape)


@settings(max_examples=200, deadline=None)
@given(
    durations=durations,
    shape=shapes,
    model=models,
    budget=st.integers(1, 20_000),
    max_batch_size=st.integers(1, 20),
    max_padded_s=st.one_of(st.none(), st.floats(1, 500)),
    max_waste=st.sampled_from([0.0, 0.2, 0.5, 1.0]),
    data=st.data(),
)
def test_budgeted_properties(durations, shape, model, budget, max_batch_size, max_padded_s, max_waste, data):
    items = items_of(*durations)
    args = (items, shape, model, budget, max_batch_size)
    kwargs = dict(max_padded_s=max_padded_s, max_padding_waste=max_waste)
    longest = shape.max_item_s if shape.rule is ShapeRule.FIXED_WINDOW else max(durations, default=0)
    if items and model.predict(1, longest) > budget:
        with pytest.raises(OutOfMemoryError):
            plan_budgeted(*args, **kwargs)
        return
    plan = plan_budgeted(*args, **kwargs)
    assert_partition(plan, items)
    assert plan == plan_budgeted(*args, **kwargs)  # deterministic
    by_id = {item.id: item.duration for item in items}
    for batch in plan.batches:
        lengths = [by_id[i] for i in batch.item_ids]
        item_s = shape.max_item_s if shape.rule is ShapeRule.FIXED_WINDOW else max(lengths)
        assert batch.predicted_bytes == model.predict(len(lengths), item_s) <= budget
        assert batch.padded_s == shape.padded_seconds(lengths)
        if len(lengths) > 1:
            assert len(lengths) <= max_batch_size
            assert max_padded_s is None or batch.padded_s <= max_padded_s
            if shape.rule is ShapeRule.VARIABLE and batch.padded_s > 0:
                assert 1 - sum(lengths) / batch.padded_s <= max_waste + 1e-9
    def would_fit(lengths: list[float]) -> bool:
        """Whether a batch of these lengths meets every limit (the batches are maximal)."""
        item_s = shape.max_item_s if shape.rule is ShapeRule.FIXED_WINDOW else max(lengths)
        padded = shape.padded_seconds(lengths)
        return (
            len(lengths) <= max_batch_size
            and model.predict(len(lengths), item_s) <= budget
            and (max_padded_s is None or padded <= max_padded_s)
            and (shape.rule is ShapeRule.FIXED_WINDOW or padded == 0 or 1 - sum(lengths) / padded <= max_waste)
        )

    if shape.rule is ShapeRule.FIXED_WINDOW:
        # Time order kept; every batch but the last has the one size that fits, the largest.
        assert [i for b in plan.batches for i in b.item_ids] == [item.id for item in items]
        assert len({len(b.item_ids) for b in plan.batches[:-1]}) <= 1
        if len(plan.batches) > 1:
            assert not would_fit([0.0] * (len(plan.batches[0].item_ids) + 1))
    else:
        # Longest first, and the order of the input does not matter.
        heads = [max(by_id[i] for i in b.item_ids) for b in plan.batches]
        assert heads == sorted(heads, reverse=True)
        # Greedy: the next batch's longest item could not have joined the batch before it.
        for before, next_head in zip(plan.batches, heads[1:]):
            assert not would_fit([by_id[i] for i in before.item_ids] + [next_head])
        shuffled = data.draw(st.permutations(items))
        assert plan == plan_budgeted(shuffled, shape, model, budget, max_batch_size, **kwargs)


def test_planner_imports_no_numeric_libraries():
    code = (
        "import sys, tingxie.planner, tingxie.memory.sizes\n"
        "heavy = {'numpy', 'torch', 'ctranslate2', 'onnxruntime', 'faster_whisper', 'funasr'}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "assert not loaded, loaded\n"
        "tingxie_modules = {m for m in sys.modules if m.startswith('tingxie')}\n"
        "extra = tingxie_modules - {'tingxie', 'tingxie.planner.shapes', 'tingxie.errors', 'tingxie.memory', 'tingxie.memory.sizes'}\n"
        "assert all(m.startswith('tingxie.planner') for m in extra), extra\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
