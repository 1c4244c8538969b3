"""Storage failure is a state, not a death: what cannot be written now, and since when.

A full disk or a failing database must not kill the scheduler or hang requests. Writers report
a failed write here (failed()); /healthz and admission ask reason(), which re-probes at most
once a second: each folder (the job database's and the uploads') gets a small scratch file
written, synced and removed, the database a small write transaction, and the free space must
stay above a reserve. When every probe passes again the problem clears by itself and the
recovery hooks run (the service writes the final states it could not write before).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable

from tingxie.memory.sizes import format_bytes
from tingxie.server.api_errors import ApiError

log = logging.getLogger("tingxie.server")
PROBE_BYTES = 64 * 1024
RESERVE_BYTES = 1 * 2**20  # below this much free space a folder counts as full
PROBE_INTERVAL_S = 1.0


def is_storage_error(error: BaseException) -> bool:
    """A write that failed because of the storage (full, read-only, I/O), not because of a bug."""
    if isinstance(error, sqlite3.OperationalError):
        return True
    return isinstance(error, OSError) and error.errno in (
        errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM, errno.EFBIG)


def storage_unavailable(reason: str) -> ApiError:
    """The 503 a client gets while storage cannot be written."""
    return ApiError(503, f"the server cannot store data now ({reason}); retry later",
                    code="storage_unavailable", headers={"Retry-After": "30"})


def describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


class StorageHealth:
    def __init__(self, folders: dict[str, Path], probe_database: Callable[[], None], *,
                 reserve_bytes: int = RESERVE_BYTES, interval_s: float = PROBE_INTERVAL_S):
        self.folders = folders  # what it is called in messages -> folder
        self.probe_database = probe_database
        self.reserve_bytes = reserve_bytes
        self.interval_s = interval_s
        self.recovery_hooks: list[Callable[[], None]] = []
        self._problem: str | None = None
        self._checked_at = -float("inf")
        self._lock = threading.Lock()

    def failed(self, what: str, error: BaseException) -> ApiError:
        """Remember a failed write (until a probe passes); the 503 to answer with."""
        reason = f"{what} cannot be written: {describe(error)}"
        with self._lock:
            if self._problem != reason:
                log.error("storage failed: %s", reason)
            self._problem = reason
            self._checked_at = time.monotonic()  # probe again after the interval, not at once
        return storage_unavailable(reason)

    def reason(self) -> str | None:
        """Why storage is unhealthy now; None when it is writable (probed at most once per interval)."""
        with self._lock:
            if time.monotonic() - self._checked_at < self.interval_s:
                return self._problem
            self._checked_at = time.monotonic()
            was = self._problem
            self._problem = self._probe()
            recovered = was is not None and self._problem is None
        if recovered:
            log.info("storage writable again (was: %s)", was)
            for hook in self.recovery_hooks:
                try:
                    hook()
                except Exception as error:  # a hook that fails again marks storage unhealthy again
                    self.failed("recovery", error)
        return self._problem

    def _probe(self) -> str | None:
        for what, folder in self.folders.items():
            try:
                folder.mkdir(parents=True, exist_ok=True)
                free = shutil.disk_usage(folder).free
                if free < self.reserve_bytes:
                    return f"{what} is full: {format_bytes(free)} free"
                _write_scratch(folder)
            except OSError as error:
                return f"{what} cannot be written: {describe(error)}"
        try:
            self.probe_database()
        except (OSError, sqlite3.Error) as error:
            return f"job database cannot be written: {describe(error)}"
        return None


def _write_scratch(folder: Path) -> None:
    path = folder / f".tingxie-probe-{os.getpid()}-{threading.get_ident()}"
    try:
        with open(path, "wb") as out:
            out.write(b"\0" * PROBE_BYTES)
            out.flush()
            os.fsync(out.fileno())
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
