"""`tingxie bench`'s outputs: the JSON document, the Markdown table and the PNG plot of speed
against peak memory. One writer per format; all read the aggregated rows of sweep.py."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from .sweep import Row

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
            _ratio(goal["vs_best_fw_batched"], goal["best_fw_batched"], "the best fw-batched row", 1.3),
            _ratio(goal["vs_best_fixed_within_budget"], goal["best_fixed_within_budget"],
                   "the best fixed batch_size_s within its budget", 0.95),
        ]) + ".")
    return "\n".join(lines) + "\n"


def _ratio(ratio: float | None, against: str | None, what: str, goal: float) -> str:
    if ratio is None:
        return f"no {what} to compare with"
    return f"{ratio:.2f}x the speed of {what} (`{against}`; goal >= {goal}: {'met' if ratio >= goal else 'not met'})"


def plot(rows: list[Row], path: Path, title: str) -> None:
    """Speed multiplier against peak RSS, one point per row; budgets as dotted verticals."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt

    markers = {"tingxie": "o", "fw-batched": "s", "funasr": "^"}
    figure, axes = plt.subplots(figsize=(7.5, 4.5), dpi=100)
    try:
        for kind, marker in markers.items():
            points = [row for row in rows if row.kind == kind]
            if not points:
                continue
            label = "tingxie" if kind == "tingxie" else kind
            axes.scatter([r.peak_rss_bytes / MIB for r in points], [r.speed for r in points], marker=marker, s=50,
                         label=label, zorder=3)
            for row in points:
                axes.annotate(row.name, (row.peak_rss_bytes / MIB, row.speed), textcoords="offset points",
                              xytext=(5, 4), fontsize=7)
        for row in rows:
            if row.budget_bytes is not None and row.memory_budget is not None:
                axes.axvline(row.budget_bytes / MIB, linestyle=":", linewidth=1, color="grey", zorder=1)
        axes.set_xlabel("peak RSS (MiB, median of runs)")
        axes.set_ylabel("speed (audio s / wall s)")
        axes.set_title(title, fontsize=9)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8, loc="best")
        figure.tight_layout()
        partial = path.with_name(path.name + ".partial")
        figure.savefig(partial, format="png")
        os.replace(partial, path)  # a reader never sees half a file
    finally:
        plt.close(figure)
