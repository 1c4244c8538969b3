"""Shared machinery for a measured region: its result record and a polling peak sampler."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

DEFAULT_SAMPLE_INTERVAL_S = 0.005  # a batch lasts 100s of ms; 5 ms polls catch its plateau


@dataclass
class Measurement:
    """Filled in when a `probe.measure()` region ends (zeros while it runs)."""

    before_bytes: int = 0  # resident just before the region
    peak_bytes: int = 0  # high-water mark during the region (absolute, not a difference)

    @property
    def added_bytes(self) -> int:
        return max(0, self.peak_bytes - self.before_bytes)


class PeakSampler:
    """Polls read() on a thread and keeps the largest value, for counters with no high-water mark.

    Sampling can miss a spike shorter than the interval, so it is a fallback: the kernel's
    VmHWM and torch's allocator statistics are exact and preferred where they exist.
    """

    def __init__(self, read: Callable[[], int], interval_s: float = DEFAULT_SAMPLE_INTERVAL_S):
        self._read = read
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.peak = 0

    def reset(self) -> None:
        self.peak = self._read()

    def start(self) -> None:
        self.reset()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tingxie-memory-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self.peak = max(self.peak, self._read())  # the region's last state counts too

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            value = self._read()
            if value > self.peak:
                self.peak = value
