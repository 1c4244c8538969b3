"""`tingxie bench` results for the page: read tolerantly, as the seeds' table and a speed/memory plot.

The file is `tingxie bench --json` output: a header (command, model, audio, audio_s, device,
runs) and rows. Keys this page does not know are ignored; a missing figure shows as empty.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

MIB = 2**20
TABLE_COLUMNS = ("name", "kind", "batch_size_s", "budget (MiB)", "wall (s)", "speed (×)", "peak RSS (MiB)",
                 "batches", "padding waste", "OOM retries", "WER")
PLOT_X, PLOT_Y = "peak RSS (MiB)", "speed (×)"


class BenchFileError(Exception):
    """A file that is not readable `tingxie bench` output, in plain words."""


@dataclass(frozen=True)
class BenchResults:
    header: dict
    rows: list[dict]

    def summary(self) -> str:
        h = self.header
        parts = [f"model **{h['model']}**" if h.get("model") else "",
                 f"audio {h['audio']}" if h.get("audio") else "",
                 f"{_number(h.get('audio_s')):.1f} s" if _number(h.get("audio_s")) is not None else "",
                 f"device {h['device']}" if h.get("device") else "",
                 f"{h['runs']} runs each" if h.get("runs") else ""]
        text = ", ".join(p for p in parts if p) or "benchmark results"
        return text + (f"  \n`{h['command']}`" if h.get("command") else "")


def load_bench(path: str | Path) -> BenchResults:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise BenchFileError(f"cannot read the benchmark file: {error.strerror or error}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BenchFileError("this is not a JSON file; choose the output of `tingxie bench`") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise BenchFileError("this JSON is not `tingxie bench` output: it has no list of rows")
    rows = [row for row in data["rows"] if isinstance(row, dict) and row.get("name") is not None]
    if not rows:
        raise BenchFileError("the benchmark file has no result rows")
    return BenchResults({k: v for k, v in data.items() if k != "rows"}, rows)


def table(results: BenchResults) -> pd.DataFrame:
    """One line per benchmark case, in the file's order."""
    lines = []
    for row in results.rows:
        budget, peak = _number(row.get("budget_bytes")), _number(row.get("peak_rss_bytes"))
        lines.append([str(row["name"]), str(row.get("kind") or ""), _number(row.get("batch_size_s")),
                      _round(budget / MIB if budget else None, 0), _round(_number(row.get("wall_s")), 2),
                      _round(_number(row.get("speed")), 1), _round(peak / MIB if peak else None, 0),
                      _number(row.get("batches")), _round(_number(row.get("padding_waste")), 3),
                      _number(row.get("oom_retries")), _round(_number(row.get("wer")), 4)])
    return pd.DataFrame(lines, columns=list(TABLE_COLUMNS))


def plot_frame(results: BenchResults) -> pd.DataFrame:
    """Speed against peak memory, one point per case that has both."""
    frame = table(results)[["name", "kind", PLOT_X, PLOT_Y]].dropna(subset=[PLOT_X, PLOT_Y])
    return frame.astype({PLOT_X: float, PLOT_Y: float})


def axis_limits(frame: pd.DataFrame) -> tuple[list[float], list[float]]:
    """From zero to a little past the largest point, so no point sits on the frame."""
    return ([0.0, float(frame[PLOT_X].max()) * 1.15 if len(frame) else 1.0],
            [0.0, float(frame[PLOT_Y].max()) * 1.15 if len(frame) else 1.0])


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
