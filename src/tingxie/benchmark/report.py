"""Render benchmark results as a Markdown table and as JSON."""

from __future__ import annotations

import dataclasses
import statistics

from tingxie.benchmark.runner import CaseResult

MIB = 1024 * 1024


def markdown_table(results: list[CaseResult], baselines: list[str]) -> str:
    """One row per case. "vs X" is X's median wall / this case's: above 1 means faster than X."""
    by_name = {result.name: result for result in results}
    missing = [name for name in baselines if name not in by_name]
    if missing:
        raise ValueError(f"baseline not among the cases: {', '.join(missing)}")
    header = ["case", "median wall s", "speed × real time"]
    header += [f"vs {name}" for name in baselines]
    header += ["peak RSS MiB", "WER %", "model load s", "runs (wall s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        row = [f"`{result.name}`", f"{result.median_wall_s:.1f}", f"{result.speed:.1f}"]
        row += [f"{by_name[name].median_wall_s / result.median_wall_s:.2f}" for name in baselines]
        row += [
            f"{result.peak_rss_bytes / MIB:.0f}",
            "—" if result.wer is None else f"{100 * result.wer:.2f}",
            f"{result.median_load_s:.2f}",
            ", ".join(f"{wall:.1f}" for wall in result.wall_s),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ('?' where there is none), for result headers."""
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "?")
    except OSError:
        return "?"


def paired_ratio(baseline: CaseResult, result: CaseResult) -> float:
    """Median over rounds of baseline wall / case wall within the same round: steadier than the
    ratio of medians when the machine's load drifts, as each pair ran minutes apart at most."""
    return paired_wall_ratio(baseline.wall_s, result.wall_s)


def paired_wall_ratio(baseline_walls: list[float], walls: list[float]) -> float:
    """Median over rounds of baseline wall / wall, the walls given in round order."""
    return statistics.median(b / r for b, r in zip(baseline_walls, walls))


def to_json(results: list[CaseResult], baselines: list[str], meta: dict | None = None) -> dict:
    """Everything measured, summary and per run (texts included, for later scoring)."""
    by_name = {result.name: result for result in results}
    return {
        "meta": meta or {},
        "baselines": baselines,
        "cases": [
            {
                "spec": dataclasses.asdict(result.spec),
                "median_wall_s": result.median_wall_s,
                "speed": result.speed,
                "ratios": {name: by_name[name].median_wall_s / result.median_wall_s for name in baselines},
                "paired_ratios": {name: paired_ratio(by_name[name], result) for name in baselines},
                "peak_rss_bytes": result.peak_rss_bytes,
                "wer": result.wer,
                "median_load_s": result.median_load_s,
                "audio_s": result.audio_s,
                "prepared": dataclasses.asdict(result.prepared) if result.prepared else None,
                "runs": [dataclasses.asdict(run) for run in result.runs],
            }
            for result in results
        ],
    }
