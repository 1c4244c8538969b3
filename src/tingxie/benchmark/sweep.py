"""`tingxie bench`'s plan and figures: which cases a sweep runs, and their rows (medians).

Pure Python on plain records, so the parsing and the aggregation are tested without a model:
the command (benchmark/command.py) runs the cases through runner.run_cases and hands the
results here; bench_report.py renders the rows.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from tingxie.errors import OptionError
from tingxie.memory.sizes import parse_memory_budget
from tingxie.benchmark.cases import CaseSpec
from tingxie.benchmark.funasr_case import FUNASR_DEFAULT_BATCH_SIZE_S
from tingxie.benchmark.report import paired_wall_ratio
from tingxie.benchmark.runner import CaseResult, RunRecord

BASELINE_KINDS = ("fw-batched", "funasr")
DEFAULT_FW_BATCH_SIZES = (4, 8)


@dataclass(frozen=True)
class Baseline:
    kind: str  # one of BASELINE_KINDS
    values: tuple[float, ...]  # fw-batched: batch sizes; funasr: batch_size_s values


@dataclass(frozen=True)
class SweepOptions:
    """Everything one `tingxie bench` run measures, validated once."""

    audio: str
    model: str = "whisper-tiny.en"
    compute_type: str = "int8"
    device: str = "cpu"
    batch_sizes_s: tuple[float, ...] = (60.0, 300.0, 600.0)
    budgets: tuple[str | None, ...] = (None,)  # one auto row each; None: tingxie's default budget
    baselines: tuple[Baseline, ...] = ()
    runs: int = 3
    beam_size: int = 5
    threads: int = 0
    max_batch_size: int | None = None  # tingxie auto rows; None: its automatic cap
    timestamps: bool = True  # tingxie rows: word-aligned times (-f all); False: text only (-f txt)
    # the tingxie rows' model, decode and VAD options from the shared flags (TranscribeOptions.to_dict);
    # None: built from the fields above
    tingxie_options: dict | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if not 1 <= self.runs <= 100:
            raise OptionError(f"--runs must be between 1 and 100, not {self.runs}")
        if self.beam_size < 1:
            raise OptionError(f"--beam-size must be at least 1, not {self.beam_size}")
        if self.threads < 0:
            raise OptionError(f"--threads must not be negative, not {self.threads}")
        if self.max_batch_size is not None and not 1 <= self.max_batch_size <= 1024:
            raise OptionError(f"--max-batch-size must be between 1 and 1024, not {self.max_batch_size}")
        for value in self.batch_sizes_s:
            _check_batch_size_s(value)
        for budget in self.budgets:
            if budget is not None:
                parse_memory_budget(budget, free_bytes=1 << 40)  # the syntax; the size is checked in the child
        if not self.batch_sizes_s and not self.budgets and not self.baselines:
            raise OptionError("nothing to measure: give --batch-size-s, --budget or --baseline")


def _check_batch_size_s(value: float) -> None:
    # FunASR truncates to whole seconds; below 1 s every segment would run alone at a 1 ms budget
    if not (math.isfinite(value) and value >= 1):
        raise OptionError(f"--batch-size-s values must be at least 1 second, not {value:g}")


def parse_batch_sizes_s(text: str) -> tuple[float, ...]:
    """'60,300,600' -> (60.0, 300.0, 600.0); '' or 'none' -> no fixed rows."""
    if text.strip().lower() in ("", "none"):
        return ()
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise OptionError(f"--batch-size-s takes numbers of seconds separated by commas, not {part.strip()!r}") from None
        _check_batch_size_s(value)
        values.append(value)
    return tuple(dict.fromkeys(values))


def parse_budgets(text: str | None) -> tuple[str | None, ...]:
    """'1GiB,50%' -> ('1GiB', '50%'); None -> one auto row at the default budget; 'none' -> no auto row."""
    if text is None:
        return (None,)
    if text.strip().lower() == "none":
        return ()
    budgets = tuple(dict.fromkeys(part.strip() for part in text.split(",")))
    for budget in budgets:
        if budget.lower() == "default":
            continue
        parse_memory_budget(budget, free_bytes=1 << 40)
    return tuple(None if budget.lower() == "default" else budget for budget in budgets)


def parse_baseline(text: str) -> Baseline:
    """'fw-batched:4,8' (batch sizes), 'funasr:300' (batch_size_s); without ':' their defaults."""
    kind, _, values = text.partition(":")
    kind = kind.strip()
    if kind not in BASELINE_KINDS:
        raise OptionError(f"--baseline takes {' or '.join(BASELINE_KINDS)} (e.g. fw-batched:4,8), not {text!r}")
    if not values.strip():
        return Baseline(kind, tuple(map(float, DEFAULT_FW_BATCH_SIZES if kind == "fw-batched" else (FUNASR_DEFAULT_BATCH_SIZE_S,))))
    if kind == "funasr":
        return Baseline(kind, parse_batch_sizes_s(values))
    sizes = []
    for part in values.split(","):
        try:
            size = int(part)
        except ValueError:
            size = 0
        if not 1 <= size <= 1024:
            raise OptionError(f"fw-batched batch sizes must be whole numbers from 1 to 1024, not {part.strip()!r}")
        sizes.append(float(size))
    return Baseline(kind, tuple(dict.fromkeys(sizes)))


@dataclass(frozen=True)
class RowSpec:
    """One row of the table: the case the runner runs, and what the row says about it."""

    case: CaseSpec
    batch_size_s: float | None = None
    memory_budget: str | None = None  # auto rows: the budget as given ('default' when none was)


def _fmt(value: float) -> str:
    return f"{value:g}"


def build_rows(options: SweepOptions) -> list[RowSpec]:
    """Fixed batch_size_s rows, then one auto row per budget, then the baselines."""
    common = dict(audio=options.audio, model=options.model, compute_type=options.compute_type,
                  beam_size=options.beam_size, threads=options.threads, device=options.device)
    tingxie = dict(common, timestamps=options.timestamps, options=options.tingxie_options)
    rows = [RowSpec(CaseSpec(f"batch_size_s={_fmt(s)}", "tingxie", batch_size=0, batch_size_s=s, **tingxie), s)
            for s in options.batch_sizes_s]
    for budget in options.budgets:
        name = f"auto, budget {budget or 'default'}"
        case = CaseSpec(name, "tingxie", batch_size=options.max_batch_size or 0, memory_budget=budget, **tingxie)
        rows.append(RowSpec(case, None, budget or "default"))
    for baseline in options.baselines:
        for value in baseline.values:
            if baseline.kind == "fw-batched":
                rows.append(RowSpec(CaseSpec(f"fw-batched {int(value)}", "fw-batched", batch_size=int(value), **common)))
            else:
                case = CaseSpec(f"funasr batch_size_s={_fmt(value)}", "funasr", batch_size_s=value, **common)
                rows.append(RowSpec(case, value))
    return rows


@dataclass
class Row:
    """The medians of one row over its runs; the keys of the JSON rows."""

    name: str
    kind: str
    batch_size_s: float | None
    budget_bytes: int | None
    wall_s: float
    speed: float
    peak_rss_bytes: int
    batches: int | None
    padding_waste: float | None
    oom_retries: int | None
    wer: float | None
    memory_budget: str | None = None
    peak_rss_max_bytes: int = 0
    under_budget: bool | None = None  # auto rows: did every run's peak stay within budget_bytes
    load_s: float = 0.0
    runs_wall_s: list[float] = field(default_factory=list)
    runs_peak_rss_bytes: list[int] = field(default_factory=list)


def run_peak_bytes(run: RunRecord) -> int:
    """The child's own peak: its VmHWM polled from outside, or as it reported it at the end
    (whichever is higher: polling can miss the last moments). wait4's figure only as a last
    resort, as it carries the parent's size over exec."""
    peak = max(run.hwm_bytes or 0, run.self_hwm_bytes or 0)
    return peak or run.peak_rss_bytes


def _median_of(runs: list[RunRecord], key: str, *, whole: bool = False):
    values = [run.extra.get(key) for run in runs]
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median_low(values) if whole else statistics.median(values)


def aggregate(row: RowSpec, runs: list[RunRecord]) -> Row:
    """A row from its runs: medians of wall time, peak, batches, padding waste, OOM retries
    and WER. Speed is audio seconds over the median wall time. Counts take the lower median so
    they stay whole numbers."""
    if not runs:
        raise ValueError(f"{row.case.name}: no runs to aggregate")
    walls = [run.wall_s for run in runs]
    peaks = [run_peak_bytes(run) for run in runs]
    wall = statistics.median(walls)
    budget = _median_of(runs, "budget_bytes", whole=True)
    rates = [run.wer for run in runs if run.wer is not None]
    return Row(
        name=row.case.name,
        kind=row.case.kind,
        batch_size_s=row.batch_size_s,
        budget_bytes=budget,
        wall_s=wall,
        speed=runs[0].audio_s / wall if wall > 0 else 0.0,
        peak_rss_bytes=int(statistics.median_low(peaks)),
        batches=_median_of(runs, "batches", whole=True),
        padding_waste=_median_of(runs, "padding_waste"),
        oom_retries=_median_of(runs, "oom_retries", whole=True),
        wer=statistics.median(rates) if rates else None,
        memory_budget=row.memory_budget,
        peak_rss_max_bytes=max(peaks),
        under_budget=None if row.memory_budget is None or budget is None else max(peaks) <= budget,
        load_s=statistics.median(run.load_s for run in runs),
        runs_wall_s=walls,
        runs_peak_rss_bytes=peaks,
    )


def rows_from_results(rows: list[RowSpec], results: list[CaseResult]) -> list[Row]:
    by_name = {result.name: result for result in results}
    return [aggregate(row, by_name[row.case.name].runs) for row in rows]


def goals(rows: list[Row]) -> list[dict]:
    """The issue's two bars, per auto row: its speed over the best fw-batched row's, and over
    the best fixed batch_size_s row whose peak (every run) stayed within the same budget; as a
    ratio of medians, and paired (the median over rounds of the ratio within each round, which
    a drifting machine load disturbs less: runs are interleaved round-robin)."""
    best_fw = max((r for r in rows if r.kind == "fw-batched"), key=lambda r: r.speed, default=None)
    fixed = [r for r in rows if r.kind == "tingxie" and r.batch_size_s is not None]
    out = []
    for auto in (r for r in rows if r.kind == "tingxie" and r.batch_size_s is None):
        fitting = [r for r in fixed if auto.budget_bytes is not None and r.peak_rss_max_bytes <= auto.budget_bytes]
        best_fixed = max(fitting, key=lambda r: r.speed, default=None)
        out.append({
            "auto": auto.name,
            "best_fw_batched": best_fw.name if best_fw else None,
            "vs_best_fw_batched": auto.speed / best_fw.speed if best_fw else None,
            "paired_vs_best_fw_batched": paired_wall_ratio(best_fw.runs_wall_s, auto.runs_wall_s) if best_fw else None,
            "best_fixed_within_budget": best_fixed.name if best_fixed else None,
            "vs_best_fixed_within_budget": auto.speed / best_fixed.speed if best_fixed else None,
            "paired_vs_best_fixed_within_budget":
                paired_wall_ratio(best_fixed.runs_wall_s, auto.runs_wall_s) if best_fixed else None,
            "under_budget": auto.under_budget,
        })
    return out
