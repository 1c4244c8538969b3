"""`tingxie bench`'s outputs: the JSON document, the Markdown table and the PNG plot of speed
against peak memory. One writer per format; all read the aggregated rows of sweep.py."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from tingxie.benchmark.sweep import Row

MIB = 1024 * 1024


def document(meta: dict, rows: list[Row], goal_list: list[dict]) -> dict:
    """The JSON shape other tools read: meta keys (command, model, audio, audio_s, device, runs)
    at the top, one dict per row, and the goal ratios."""
    return {**meta, "rows": [dataclasses.asdict(row) for row in rows], "goals": goal_list}


def _cell(value, form: str) -> str:
    return "—" if value is None else format(value, form)


def markdown(meta: dict, rows: list[Row], goal_list: list[dict]) -> str:
    lines = [
        f"Command: `{meta['command']}`",
        "",
        f"Model {meta['model']}, audio {meta['audio']} ({meta['audio_s']:.1f} s), device {meta['device']}, "
        f"medians of {meta['runs']} run(s), each in a fresh process.",
        "",
        "| row | budget | wall s | speed × real time | peak RSS MiB | under budget | batches | padding waste % "
        "| OOM retries | WER % | runs (wall s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        budget = "—" if row.memory_budget is None else (
            row.memory_budget if row.budget_bytes is None else f"{row.memory_budget} = {row.budget_bytes / MIB:.0f} MiB")
        under = "—" if row.under_budget is None else ("yes" if row.under_budget else "**no**")
        cells = [
            f"`{row.name}`", budget, f"{row.wall_s:.1f}", f"{row.speed:.1f}", f"{row.peak_rss_bytes / MIB:.0f}", under,
            _cell(row.batches, "d"), _cell(None if row.padding_waste is None else 100 * row.padding_waste, ".1f"),
            _cell(row.oom_retries, "d"), _cell(None if row.wer is None else 100 * row.wer, ".2f"),
            ", ".join(f"{wall:.1f}" for wall in row.runs_wall_s),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for goal in goal_list:
        lines.append("")
        lines.append(f"`{goal['auto']}`: " + "; ".join([
            _ratio(goal["vs_best_fw_batched"], goal.get("paired_vs_best_fw_batched"), goal["best_fw_batched"],
                   "fw-batched row", 1.3),
            _ratio(goal["vs_best_fixed_within_budget"], goal.get("paired_vs_best_fixed_within_budget"),
                   goal["best_fixed_within_budget"], "fixed batch_size_s row within its budget", 0.95),
        ]) + ".")
    return "\n".join(lines) + "\n"


def _ratio(ratio: float | None, paired: float | None, against: str | None, what: str, goal: float) -> str:
    if ratio is None:
        return f"no {what} to compare with"
    paired_text = "" if paired is None else f", paired {paired:.2f}x"
    return (f"{ratio:.2f}x the speed of the best {what} (`{against}`{paired_text}; goal >= {goal}: "
            f"{'met' if ratio >= goal else 'not met'} on medians)")


def _series(row: Row) -> str:
    if row.kind == "tingxie":
        return "tingxie batch_size_s" if row.batch_size_s is not None else "tingxie auto"
    return row.kind


SERIES = {"tingxie auto": "o", "tingxie batch_size_s": "D", "fw-batched": "s", "funasr": "^"}


def plot(rows: list[Row], path: Path, title: str) -> None:
    """Speed multiplier against peak RSS, one point per row; the auto rows' budgets as dotted
    verticals where they fall near the points (a default budget of most of the machine's memory
    would squeeze them to one side: it is named in the legend instead)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 4.5), dpi=100)
    try:
        for series, marker in SERIES.items():
            points = [row for row in rows if _series(row) == series]
            if not points:
                continue
            axes.scatter([r.peak_rss_bytes / MIB for r in points], [r.speed for r in points], marker=marker, s=50,
                         label=series, zorder=3)
            for row in points:
                axes.annotate(row.name, (row.peak_rss_bytes / MIB, row.speed), textcoords="offset points",
                              xytext=(5, 4), fontsize=7)
        right = 1.25 * max(row.peak_rss_bytes / MIB for row in rows)
        for row in rows:
            if row.budget_bytes is None or row.memory_budget is None:
                continue
            budget_mib = row.budget_bytes / MIB
            if budget_mib <= 2 * right:
                right = max(right, 1.1 * budget_mib)
                axes.axvline(budget_mib, linestyle=":", linewidth=1, color="grey", zorder=1)
                axes.annotate(f"budget {row.memory_budget}", (budget_mib, 1), xycoords=("data", "axes fraction"),
                              xytext=(2, -10), textcoords="offset points", fontsize=7, color="grey", rotation=90, va="top")
            else:
                axes.plot([], [], " ", label=f"budget {row.memory_budget} = {budget_mib:.0f} MiB (off the plot)")
        axes.set_xlim(0, right)
        axes.set_ylim(0, 1.15 * max(row.speed for row in rows))
        axes.set_xlabel("peak RSS (MiB, median of runs)")
        axes.set_ylabel("speed (audio s / wall s)")
        axes.set_title(title, fontsize=9)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7, loc="lower right")
        figure.tight_layout()
        partial = path.with_name(path.name + ".partial")
        figure.savefig(partial, format="png")
        os.replace(partial, path)  # a reader never sees half a file
    finally:
        plt.close(figure)
