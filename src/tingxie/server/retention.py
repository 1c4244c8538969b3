"""--keep-jobs: finished jobs expire by age or beyond a count, with their segments.

A thread removes them at start and then every interval (a tenth of the age, between one
second and a minute; a minute for a count), and at once when a job finishes (poke: a count
holds as jobs end, not up to a minute later). Unfinished jobs are never touched. A removal that
fails on a full disk is tried again at the next tick.
"""

from __future__ import annotations

import logging
import threading
import time

from tingxie.server.config import parse_keep
from tingxie.server.store import JobStore

log = logging.getLogger("tingxie.server")


class Retention:
    def __init__(self, store: JobStore, keep: str, clock=time.time):
        self.store = store
        self.max_age_s, self.max_count = parse_keep(keep)
        self.clock = clock
        self.interval_s = min(60.0, max(1.0, self.max_age_s / 10)) if self.max_age_s else 60.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tingxie-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        """A job finished: expire now rather than at the next tick."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def expire(self) -> list[str]:
        """Remove what is past the limit now; the ids removed."""
        before = self.clock() - self.max_age_s if self.max_age_s else None
        removed = self.store.expire(finished_before=before, keep=self.max_count)
        if removed:
            log.info("expired", extra={"fields": {"jobs": len(removed)}})
        return removed

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.expire()
            except Exception as error:  # a full disk or a closed store: try again at the next tick
                log.warning("expiring jobs failed: %s", error)
            self._wake.wait(self.interval_s)
            self._wake.clear()
