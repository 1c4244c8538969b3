"""`tingxie bench` without models: option parsing, the rows' medians, padding waste, goals and
the three outputs (JSON, Markdown, PNG) from fake records."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest

from tingxie.backends.fake import FakeBackend
from tingxie.benchmark import bench_report
from tingxie.benchmark.runner import RunRecord
from tingxie.benchmark.sweep import (
    Baseline,
    Row,
    SweepOptions,
    aggregate,
    build_rows,
    goals,
    parse_baseline,
    parse_batch_sizes_s,
    parse_budgets,
)
from tingxie.errors import OptionError, OutOfMemoryError
from tingxie.engine.executor import Executor
from tingxie.planner import MemoryModel, PaddingTally, PlanItem, plan_budgeted, plan_funasr
from tingxie.segments import AudioSegment
from tingxie.planner.shapes import InputShape, ShapeRule

MIB = 1024 * 1024


def record(wall_s, hwm_mib, *, self_mib=None, audio_s=600.0, wer=None, **extra) -> RunRecord:
    return RunRecord(wall_s=wall_s, load_s=1.0, process_s=wall_s + 2, peak_rss_bytes=10_000 * MIB,
                     hwm_bytes=None if hwm_mib is None else hwm_mib * MIB,
                     self_hwm_bytes=None if self_mib is None else self_mib * MIB, parent_rss_bytes=0,
                     audio_s=audio_s, text="", extra=extra, wer=wer)


# --- parsing --------------------------------------------------------------------------------

def test_batch_sizes_parse_and_reject_negative_zero_and_words():
    assert parse_batch_sizes_s("60,300,600") == (60.0, 300.0, 600.0)
    assert parse_batch_sizes_s("60, 60,1.5") == (60.0, 1.5)
    assert parse_batch_sizes_s("none") == ()
    for bad in ("-60", "0", "sixty", "60,,300", "nan", "inf"):
        with pytest.raises(OptionError, match="batch-size-s"):
            parse_batch_sizes_s(bad)


def test_budgets_parse_and_reject_bad_sizes():
    assert parse_budgets(None) == (None,)
    assert parse_budgets("1GiB, 50%,default") == ("1GiB", "50%", None)
    assert parse_budgets("none") == ()
    for bad in ("-1GiB", "lots", "0", "1GiB,150%"):
        with pytest.raises(OptionError):
            parse_budgets(bad)


def test_baselines_parse_and_reject_unknown_kinds_and_sizes():
    assert parse_baseline("fw-batched:4,8") == Baseline("fw-batched", (4.0, 8.0))
    assert parse_baseline("fw-batched") == Baseline("fw-batched", (4.0, 8.0))
    assert parse_baseline("funasr") == Baseline("funasr", (300.0,))
    assert parse_baseline("funasr:60,600") == Baseline("funasr", (60.0, 600.0))
    for bad in ("whisperx:4", "fw-batched:0", "fw-batched:-4", "fw-batched:2.5", "funasr:-1"):
        with pytest.raises(OptionError):
            parse_baseline(bad)


def test_options_validate_runs_and_need_something_to_measure():
    with pytest.raises(OptionError, match="runs"):
        SweepOptions(audio="a.flac", runs=0)
    with pytest.raises(OptionError, match="nothing to measure"):
        SweepOptions(audio="a.flac", batch_sizes_s=(), budgets=(), baselines=())
    with pytest.raises(OptionError, match="batch-size-s"):
        SweepOptions(audio="a.flac", batch_sizes_s=(-5.0,))


def test_one_row_per_batch_size_per_budget_per_baseline_value():
    options = SweepOptions(audio="a.flac", batch_sizes_s=(60.0, 300.0), budgets=("1GiB", None),
                           baselines=(Baseline("fw-batched", (4.0, 8.0)), Baseline("funasr", (300.0,))))
    rows = build_rows(options)
    assert [r.case.name for r in rows] == [
        "batch_size_s=60", "batch_size_s=300", "auto, budget 1GiB", "auto, budget default",
        "fw-batched 4", "fw-batched 8", "funasr batch_size_s=300"]
    assert [r.case.kind for r in rows] == ["tingxie"] * 4 + ["fw-batched"] * 2 + ["funasr"]
    assert [r.case.batch_size_s for r in rows] == [60.0, 300.0, None, None, None, None, 300.0]
    assert [r.case.memory_budget for r in rows[:4]] == [None, None, "1GiB", None]
    assert [r.memory_budget for r in rows[:4]] == [None, None, "1GiB", "default"]
    assert [r.case.batch_size for r in rows[4:6]] == [4, 8]
    assert rows[0].case.batch_size == 0  # tingxie's automatic cap, not the harness's 16
    assert all(r.case.timestamps for r in rows)  # by default tingxie rows time their words


def test_txt_rows_skip_word_times_in_tingxie_rows_only():
    from tingxie.benchmark.command import options_from_args, register

    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    audio = Path(__file__).parent / "data" / "jfk.flac"
    args = parser.parse_args(["bench", str(audio), "--baseline", "fw-batched:4", "-f", "txt"])
    rows = build_rows(options_from_args(args))
    assert [(r.case.kind, r.case.timestamps) for r in rows] == [("tingxie", False)] * 4 + [("fw-batched", True)]
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", str(audio), "-f", "srt"])


# --- aggregation ----------------------------------------------------------------------------

def test_medians_of_an_odd_number_of_runs():
    runs = [record(50.0, 900, batches=10, padding_waste=0.2, oom_retries=0, budget_bytes=1024 * MIB, wer=0.06),
            record(30.0, 700, batches=12, padding_waste=0.1, oom_retries=2, budget_bytes=1024 * MIB, wer=0.05),
            record(40.0, 800, batches=11, padding_waste=0.3, oom_retries=1, budget_bytes=1024 * MIB, wer=0.07)]
    spec = build_rows(SweepOptions(audio="a", batch_sizes_s=(), budgets=("1GiB",)))[0]
    assert spec.memory_budget == "1GiB"
    row = aggregate(spec, runs)
    assert row.wall_s == 40.0
    assert row.speed == pytest.approx(600.0 / 40.0)
    assert row.peak_rss_bytes == 800 * MIB
    assert row.peak_rss_max_bytes == 900 * MIB
    assert (row.batches, row.oom_retries) == (11, 1)
    assert row.padding_waste == pytest.approx(0.2)
    assert row.wer == pytest.approx(0.06)
    assert row.budget_bytes == 1024 * MIB and row.under_budget is True
    assert row.runs_wall_s == [50.0, 30.0, 40.0]


def test_medians_of_an_even_number_of_runs_keep_counts_whole():
    spec = build_rows(SweepOptions(audio="a", batch_sizes_s=(60.0,), budgets=()))[0]
    runs = [record(10.0, 100, batches=3, padding_waste=0.1, oom_retries=0),
            record(20.0, 300, batches=4, padding_waste=0.2, oom_retries=1)]
    row = aggregate(spec, runs)
    assert row.wall_s == 15.0  # the mean of the two middle walls
    assert row.speed == pytest.approx(600.0 / 15.0)
    assert row.padding_waste == pytest.approx(0.15)
    assert row.batches == 3 and row.oom_retries == 0  # lower median: a real count
    assert row.peak_rss_bytes == 100 * MIB
    assert row.budget_bytes is None and row.under_budget is None
    assert row.batch_size_s == 60.0


def test_peak_is_the_child_own_high_water_mark_never_the_wait4_floor():
    spec = build_rows(SweepOptions(audio="a", batch_sizes_s=(60.0,), budgets=()))[0]
    assert aggregate(spec, [record(1.0, 500, self_mib=520)]).peak_rss_bytes == 520 * MIB  # polling missed the end
    assert aggregate(spec, [record(1.0, 500, self_mib=400)]).peak_rss_bytes == 500 * MIB
    assert aggregate(spec, [record(1.0, None)]).peak_rss_bytes == 10_000 * MIB  # nothing else known


def test_an_auto_row_over_budget_in_any_run_is_flagged():
    spec = build_rows(SweepOptions(audio="a", batch_sizes_s=(), budgets=("1GiB",)))[0]
    runs = [record(1.0, 900, budget_bytes=1024 * MIB), record(1.0, 1100, budget_bytes=1024 * MIB),
            record(1.0, 950, budget_bytes=1024 * MIB)]
    row = aggregate(spec, runs)
    assert row.peak_rss_bytes == 950 * MIB and row.under_budget is False


def fake_row(name, kind, speed, peak_mib, *, batch_size_s=None, budget_mib=None, budget=None):
    return Row(name=name, kind=kind, batch_size_s=batch_size_s,
               budget_bytes=None if budget_mib is None else budget_mib * MIB, wall_s=600 / speed, speed=speed,
               peak_rss_bytes=peak_mib * MIB, batches=None, padding_waste=None, oom_retries=None, wer=None,
               memory_budget=budget, peak_rss_max_bytes=peak_mib * MIB,
               under_budget=None if budget is None else peak_mib <= budget_mib, runs_wall_s=[600 / speed])


def test_goals_compare_auto_with_the_best_fw_row_and_the_best_fixed_row_within_its_budget():
    rows = [fake_row("batch_size_s=60", "tingxie", 20.0, 600, batch_size_s=60),
            fake_row("batch_size_s=600", "tingxie", 30.0, 1900, batch_size_s=600),
            fake_row("auto, budget 1GiB", "tingxie", 21.0, 610, budget_mib=1024, budget="1GiB"),
            fake_row("fw-batched 4", "fw-batched", 15.0, 700),
            fake_row("fw-batched 8", "fw-batched", 14.0, 900)]
    [goal] = goals(rows)
    assert goal["best_fw_batched"] == "fw-batched 4"
    assert goal["vs_best_fw_batched"] == pytest.approx(21 / 15)
    assert goal["best_fixed_within_budget"] == "batch_size_s=60"  # 600 is faster but peaks at 1.9 GiB
    assert goal["vs_best_fixed_within_budget"] == pytest.approx(21 / 20)
    assert goal["paired_vs_best_fw_batched"] == pytest.approx(21 / 15)  # one round each
    assert goal["under_budget"] is True


# --- padding waste --------------------------------------------------------------------------

def test_padding_waste_of_a_fake_variable_length_plan_is_exact():
    items = [PlanItem(0, 10.0), PlanItem(1, 8.0), PlanItem(2, 5.0), PlanItem(3, 4.0)]
    shape = InputShape(ShapeRule.VARIABLE, 30.0)
    plan = plan_funasr(items, 20, None, shape)  # sorted 4, 5, 8: 3 x 8 = 24 >= 20 closes with 8 in; 10 alone
    assert [b.item_ids for b in plan.batches] == [(3, 2, 1), (0,)]
    padded = 3 * 8.0 + 10.0
    assert plan.padding_waste == pytest.approx(1 - 27.0 / padded)

    backend = FakeBackend(shape=shape)
    executor = Executor(backend)
    segments = {i.id: AudioSegment(i.id, 0.0, i.duration, np.zeros(0, np.float32)) for i in items}
    for batch in plan.batches:
        executor.run([segments[i] for i in batch.item_ids])
    assert executor.padding.speech_s == pytest.approx(27.0)
    assert executor.padding.padded_s == pytest.approx(padded)
    assert executor.padding.waste == pytest.approx(plan.padding_waste)


def test_padding_waste_counts_batches_as_run_after_an_oom_split():
    shape = InputShape(ShapeRule.VARIABLE, 30.0)
    backend = FakeBackend(shape=shape, oom_above_cost_s=20.0)
    executor = Executor(backend)
    batch = [AudioSegment(0, 0.0, 10.0, np.zeros(0, np.float32)), AudioSegment(1, 10.0, 12.0, np.zeros(0, np.float32)),
             AudioSegment(2, 12.0, 16.0, np.zeros(0, np.float32))]  # 10, 2, 4 s: 3 x 10 = 30 > 20 splits
    executor.run(batch)
    assert executor.oom_retries == 1
    # ran as [10, 2] (padded 20) and [4] (padded 4): 16 s of speech in 24 padded seconds
    assert executor.padding.padded_s == pytest.approx(24.0)
    assert executor.padding.waste == pytest.approx(1 - 16 / 24)


def test_padding_waste_of_fixed_windows():
    tally = PaddingTally()
    shape = InputShape(ShapeRule.FIXED_WINDOW, 30.0)
    tally.add([30.0, 27.0, 12.0], shape)
    tally.add([3.0], shape)
    assert tally.padded_s == 120.0
    assert tally.waste == pytest.approx(1 - 72 / 120)
    assert PaddingTally().waste == 0.0


def test_budgeted_plan_reports_its_waste_from_the_same_function():
    items = [PlanItem(i, d) for i, d in enumerate([12.0, 11.0, 3.0, 2.5])]
    plan = plan_budgeted(items, InputShape(ShapeRule.VARIABLE, 30.0), MemoryModel(0, 1, 0), 10**9, 4)
    expected = 1 - sum(i.duration for i in items) / sum(b.padded_s for b in plan.batches)
    assert plan.padding_waste == pytest.approx(expected)


# --- the smallest-batch check ---------------------------------------------------------------

class _Probe:
    device = "cpu"

    def __init__(self, resident):
        self.resident = resident

    def current_bytes(self):
        return self.resident


def test_a_budget_below_the_smallest_batch_names_the_minimum():
    from tingxie.memory.planning import RESERVE_FRACTION, MemoryPlanner

    model = MemoryModel(fixed=0, per_item_s=MIB, per_item_s2=0)  # one 30 s window: 30 MiB
    shape = InputShape(ShapeRule.FIXED_WINDOW, 30.0)
    planner = MemoryPlanner(model, _Probe(200 * MIB), total_budget_bytes=220 * MIB, given="220MiB")
    with pytest.raises(OutOfMemoryError) as caught:
        planner.check_smallest_batch(shape)
    minimum = (200 + 30) / (1 - RESERVE_FRACTION)
    # the user's own value, what the model holds, what one item needs, and the smallest budget that works
    assert str(caught.value) == (
        "--memory-budget 220MiB (220.0 MiB) is below the smallest batch: the loaded model and runtime hold "
        f"200.0 MiB, one 30.0 s item needs 30.0 MiB more; the smallest budget that works is {minimum:.1f} MiB")
    default = MemoryPlanner(model, _Probe(200 * MIB), total_budget_bytes=220 * MIB)
    with pytest.raises(OutOfMemoryError, match=r"^the default memory budget \(220.0 MiB, 70 % of what is free\)"):
        default.check_smallest_batch(shape)
    MemoryPlanner(model, _Probe(200 * MIB), total_budget_bytes=int(minimum * MIB) + 1).check_smallest_batch(shape)


# --- outputs ----------------------------------------------------------------------------------

def test_paired_ratio_is_the_median_of_per_round_ratios():
    auto = fake_row("auto, budget 1GiB", "tingxie", 20.0, 600, budget_mib=1024, budget="1GiB")
    fw = fake_row("fw-batched 4", "fw-batched", 15.0, 700)
    auto.runs_wall_s, fw.runs_wall_s = [10.0, 20.0, 30.0], [12.0, 10.0, 60.0]  # ratios 1.2, 0.5, 2.0
    [goal] = goals([auto, fw])
    assert goal["paired_vs_best_fw_batched"] == pytest.approx(1.2)


def test_json_markdown_and_png_from_fake_rows(tmp_path):
    rows = [fake_row("batch_size_s=60", "tingxie", 20.0, 600, batch_size_s=60),
            fake_row("auto, budget 1GiB", "tingxie", 21.0, 610, budget_mib=1024, budget="1GiB"),
            fake_row("fw-batched 4", "fw-batched", 15.0, 700)]
    meta = {"command": "tingxie bench a.flac", "model": "whisper-tiny.en", "audio": "a.flac", "audio_s": 600.0,
            "device": "cpu", "runs": 1}
    goal_list = goals(rows)
    doc = json.loads(json.dumps(bench_report.document(meta, rows, goal_list)))
    assert {k: doc[k] for k in meta} == meta
    assert [r["name"] for r in doc["rows"]] == ["batch_size_s=60", "auto, budget 1GiB", "fw-batched 4"]
    required = {"name", "kind", "batch_size_s", "budget_bytes", "wall_s", "speed", "peak_rss_bytes", "batches",
                "padding_waste", "oom_retries", "wer"}
    assert all(required <= set(r) for r in doc["rows"])
    assert doc["rows"][1]["budget_bytes"] == 1024 * MIB and doc["rows"][1]["under_budget"] is True

    table = bench_report.markdown(meta, rows, goal_list)
    lines = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(lines) == 3 and "| 1GiB = 1024 MiB |" in lines[1] and "| 21.0 |" in lines[1]
    assert "1.40x the speed of the best fw-batched row (`fw-batched 4`, paired 1.40x; goal >= 1.3: met on medians)" in table

    png = tmp_path / "plot.png"
    bench_report.plot(rows, png, "test")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as image:
        image.verify()
        assert image.size[0] >= 300 and image.size[1] >= 200
    assert not list(tmp_path.glob("*.partial"))


def test_statistics_median_matches_the_rows_for_many_random_run_sets():
    rng = np.random.default_rng(0)
    spec = build_rows(SweepOptions(audio="a", batch_sizes_s=(60.0,), budgets=()))[0]
    for n in range(1, 7):
        walls = list(rng.uniform(10, 60, n))
        peaks = [int(p) for p in rng.integers(100, 2000, n)]
        row = aggregate(spec, [record(w, p, batches=int(p)) for w, p in zip(walls, peaks)])
        assert row.wall_s == pytest.approx(statistics.median(walls))
        assert row.peak_rss_bytes == statistics.median_low(peaks) * MIB
        assert row.batches == statistics.median_low(peaks)
