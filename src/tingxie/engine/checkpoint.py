"""Durable progress of one transcription, so a killed run continues where it stopped.

A JSON-lines file beside the outputs: a header naming the input and the options, then one
line per finished window (with the wall seconds of every run so far), flushed and fsynced
before the run goes on. A run that finds a
checkpoint with the same header takes the recorded segments instead of recomputing them; a
torn last line (the kill came mid-write) is ignored. The file is removed once the outputs
are written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from tingxie import __version__
from tingxie.options import TranscribeOptions
from tingxie.segments import SegmentResult, piece_from_json, piece_to_json
from tingxie.engine.streaming import WindowDone

FORMAT = 1


def checkpoint_path(input_path: str, output_dir: Path) -> Path:
    return output_dir / f".{Path(input_path).name}.tingxie-checkpoint.jsonl"


def fingerprint(input_path: str, options: TranscribeOptions) -> dict[str, Any]:
    stat = os.stat(input_path)
    return {
        "format": FORMAT,
        "tingxie": __version__,
        "input": os.path.abspath(input_path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "options": dataclasses.asdict(options),
    }


class Checkpoint:
    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = path
        self._header = header
        self.results: dict[int, SegmentResult] = {}
        # wall seconds the interrupted runs spent up to their last recorded window: a resumed
        # run's figures cover the whole transcription, not only its own part
        self.earlier_wall_s = 0.0
        if path.exists():
            self.results, self.earlier_wall_s = _read(path, header)
        self.resumed = bool(self.results)
        self._started = time.perf_counter()
        self._file = None  # opened at the first finished window: a failed input leaves nothing

    def recorded(self, index: int) -> SegmentResult | None:
        """The result of segment `index` from the interrupted run, if it finished."""
        return self.results.get(index)

    def record(self, window: WindowDone) -> None:
        new = [r for r in window.results if r.index not in self.results]
        if not new:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a" if self.resumed else "w", encoding="utf-8")
            if not self.resumed:
                self._append(self._header)
        self._append({"window": window.number, "results": [_result_to_json(r) for r in new],
                      "wall_s": round(self.earlier_wall_s + time.perf_counter() - self._started, 3)})
        self.results.update((r.index, r) for r in new)

    def close(self, *, remove: bool) -> None:
        if self._file is not None:
            self._file.close()
        if remove:
            self.path.unlink(missing_ok=True)

    def _append(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())


def _read(path: Path, header: dict[str, Any]) -> tuple[dict[int, SegmentResult], float]:
    """The recorded results, and the wall seconds spent up to the last of them."""
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        if not lines or json.loads(lines[0]) != json.loads(json.dumps(header)):
            return {}, 0.0  # another input or other options: start over
    except json.JSONDecodeError:
        return {}, 0.0
    results, wall_s = {}, 0.0
    for line in lines[1:]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break  # torn by a kill mid-write: everything after it is lost anyway
        results.update((r["index"], _result_from_json(r)) for r in record["results"])
        wall_s = max(wall_s, float(record.get("wall_s", 0.0)))  # absent in checkpoints of older versions
    return results, wall_s


def _result_to_json(result: SegmentResult) -> dict[str, Any]:
    return {
        "index": result.index,
        "language": result.language,
        "tokens": list(result.tokens),
        "pieces": [piece_to_json(p) for p in result.pieces],
        "words": [piece_to_json(w) for w in result.words],
    }


def _result_from_json(record: dict[str, Any]) -> SegmentResult:
    return SegmentResult(
        index=record["index"],
        pieces=tuple(piece_from_json(p) for p in record["pieces"]),
        language=record["language"],
        tokens=tuple(record["tokens"]),
        words=tuple(piece_from_json(w) for w in record.get("words", ())),
    )
