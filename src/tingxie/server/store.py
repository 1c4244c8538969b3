"""Durable jobs in SQLite: one row per job, one row per finished segment.

WAL mode with synchronous=NORMAL: a committed transaction survives the process being killed
(only a power cut may lose the last few), and readers never block the scheduler's writes.
One connection behind a lock: the writes are small and few (one transaction per job per batch).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from tingxie.segments import SegmentResult, TokenLogprob, piece_from_json, piece_to_json

SCHEMA_VERSION = 4
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    options TEXT NOT NULL,
    upload_path TEXT,
    audio_total_s REAL,
    audio_done_s REAL NOT NULL DEFAULT 0,
    segments_total INTEGER,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    processing_s REAL NOT NULL DEFAULT 0,
    peak_memory_bytes INTEGER,
    language TEXT,
    error TEXT,
    error_status INTEGER,
    batches INTEGER NOT NULL DEFAULT 0,
    oom_retries INTEGER NOT NULL DEFAULT 0,
    speaker_turns TEXT,
    memory TEXT
);
CREATE TABLE IF NOT EXISTS segments (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (job_id, idx)
);
CREATE TABLE IF NOT EXISTS health (id INTEGER PRIMARY KEY, checked_at REAL NOT NULL);
"""
_MIGRATIONS = {  # from version n to n + 1
    1: "ALTER TABLE jobs ADD COLUMN batches INTEGER NOT NULL DEFAULT 0;"
       "ALTER TABLE jobs ADD COLUMN oom_retries INTEGER NOT NULL DEFAULT 0;",
    2: "ALTER TABLE jobs ADD COLUMN speaker_turns TEXT;",  # a diarized job's turns (server/speakers.py)
    3: "ALTER TABLE jobs ADD COLUMN memory TEXT;",  # the memory block of its status (older rows: NULL)
}
_COLUMNS = ("id", "state", "options", "upload_path", "audio_total_s", "audio_done_s", "segments_total",
            "created_at", "started_at", "finished_at", "processing_s", "peak_memory_bytes", "language",
            "error", "error_status", "batches", "oom_retries", "speaker_turns", "memory")
_JSON_COLUMNS = ("speaker_turns", "memory")


@dataclass
class JobRecord:
    id: str
    state: str
    options: dict[str, Any]
    upload_path: str | None
    audio_total_s: float | None
    audio_done_s: float
    segments_total: int | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    processing_s: float
    peak_memory_bytes: int | None
    language: str | None
    error: str | None
    error_status: int | None
    batches: int = 0
    oom_retries: int = 0
    speaker_turns: list | None = None  # [start, end, speaker number] of a diarized job, once it succeeded
    # the memory budget as the job saw it (the `memory` block of its status), as of its last
    # batch and its end; None for a job without a budget, or stored before schema 4
    memory: dict | None = None


@dataclass(frozen=True)
class FinishedSegment:
    index: int
    start: float
    end: float
    result: SegmentResult


class JobStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if not 0 <= version <= SCHEMA_VERSION:
            raise RuntimeError(f"{path}: job database has schema {version}; this tingxie reads {SCHEMA_VERSION}")
        for step in range(version or SCHEMA_VERSION, SCHEMA_VERSION):
            self._db.executescript(_MIGRATIONS[step])
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, job_id: str, options: dict[str, Any], upload_path: str, audio_total_s: float | None,
               created_at: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, state, options, upload_path, audio_total_s, created_at) VALUES (?,?,?,?,?,?)",
                (job_id, "queued", json.dumps(options), upload_path, audio_total_s, created_at))

    def update(self, job_id: str, **fields: Any) -> None:
        fields = _encoded(fields)
        names = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {names} WHERE id = ?", (*fields.values(), job_id))

    def record(self, job_id: str, finished: Iterable[FinishedSegment], **fields: Any) -> None:
        """Finished segments and the progress of a job still active, in one transaction."""
        fields = _encoded(fields)
        rows = [(job_id, f.index, f.start, f.end, json.dumps(_result_to_json(f.result), ensure_ascii=False))
                for f in finished]
        names = ", ".join(f"{name} = ?" for name in fields)
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                'INSERT OR REPLACE INTO segments (job_id, idx, start, "end", result) VALUES (?,?,?,?,?)', rows)
            if fields:  # never over a final state written meanwhile (a cancel racing the batch)
                self._db.execute(f"UPDATE jobs SET {names} WHERE id = ? AND state IN ('queued', 'running')",
                                 (*fields.values(), job_id))

    def probe(self) -> None:
        """A small write transaction: raises while the database cannot be written (health.py)."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO health (id, checked_at) VALUES (1, ?)", (time.time(),))

    def delete(self, job_id: str) -> bool:
        """Remove a finished job and its segments; False if there is none or it is unfinished."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            return self._db.execute("DELETE FROM jobs WHERE id = ? AND state NOT IN ('queued', 'running')",
                                    (job_id,)).rowcount > 0

    def expire(self, *, finished_before: float | None = None, keep: int | None = None) -> list[str]:
        """Remove finished jobs that ended before a time, or beyond the newest `keep`; their ids."""
        clauses, params = [], []
        if finished_before is not None:
            clauses.append("finished_at < ?")
            params.append(finished_before)
        if keep is not None:
            clauses.append("id NOT IN (SELECT id FROM jobs WHERE state NOT IN ('queued', 'running') "
                           "ORDER BY finished_at DESC, created_at DESC LIMIT ?)")
            params.append(keep)
        if not clauses:
            return []
        where = f"state NOT IN ('queued', 'running') AND ({' OR '.join(clauses)})"
        with self._lock, self._db:
            self._db.execute("BEGIN")
            ids = [row[0] for row in self._db.execute(f"SELECT id FROM jobs WHERE {where}", params)]
            self._db.execute(f"DELETE FROM jobs WHERE {where}", params)
        return ids

    def get(self, job_id: str) -> JobRecord | None:
        found = self._jobs("WHERE id = ?", (job_id,))
        return found[0] if found else None

    def unfinished(self) -> list[JobRecord]:
        return self._jobs("WHERE state IN ('queued', 'running') ORDER BY created_at")

    def recent(self, limit: int = 20) -> list[JobRecord]:
        """The newest jobs first, whatever their state (the web page's job list)."""
        return self._jobs("ORDER BY created_at DESC LIMIT ?", (limit,))

    def _jobs(self, clause: str, params: tuple = ()) -> list[JobRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs {clause}", params).fetchall()
        return [_record(row) for row in rows]

    def count_segments(self, job_id: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM segments WHERE job_id = ?", (job_id,)).fetchone()[0]

    def segments(self, job_id: str) -> list[FinishedSegment]:
        with self._lock:
            rows = self._db.execute(
                'SELECT idx, start, "end", result FROM segments WHERE job_id = ? ORDER BY idx', (job_id,)
            ).fetchall()
        return [FinishedSegment(idx, start, end, _result_from_json(idx, json.loads(text))) for idx, start, end, text in rows]


def _check_fields(fields: dict[str, Any]) -> None:
    unknown = set(fields) - set(_COLUMNS[1:])  # column names are interpolated: only known ones
    if unknown:
        raise ValueError(f"unknown job fields {sorted(unknown)}")


def _encoded(fields: dict[str, Any]) -> dict[str, Any]:
    """Known columns only; the JSON ones as their text (None stays NULL)."""
    _check_fields(fields)
    return {name: json.dumps(value) if name in _JSON_COLUMNS and value is not None else value
            for name, value in fields.items()}


def _record(row: tuple) -> JobRecord:
    values = dict(zip(_COLUMNS, row))
    values["options"] = json.loads(values["options"])
    for name in _JSON_COLUMNS:
        values[name] = json.loads(values[name]) if values[name] else None
    return JobRecord(**values)


def _result_to_json(result: SegmentResult) -> dict[str, Any]:
    return {"language": result.language, "tokens": list(result.tokens),
            "pieces": [piece_to_json(p) for p in result.pieces],
            "words": [piece_to_json(w) for w in result.words]} | (
        # include[]=logprobs: each token as [its bytes in hex, log-probability]
        {"logprobs": [[t.bytes.hex(), t.logprob] for t in result.logprobs]} if result.logprobs else {})


def _result_from_json(index: int, record: dict[str, Any]) -> SegmentResult:
    return SegmentResult(index=index, pieces=tuple(piece_from_json(p) for p in record["pieces"]),
                         language=record["language"], tokens=tuple(record["tokens"]),
                         words=tuple(piece_from_json(w) for w in record.get("words", ())),
                         logprobs=tuple(TokenLogprob(bytes.fromhex(raw), logprob)
                                        for raw, logprob in record.get("logprobs", ())))
