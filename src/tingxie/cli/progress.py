"""A progress bar on stderr, counted in seconds of audio transcribed."""

from __future__ import annotations

import sys

from tqdm import tqdm


class ProgressBar:
    def __init__(self, label: str, enabled: bool = True):
        self._label = label
        self._enabled = enabled
        self._bar: tqdm | None = None

    def __enter__(self) -> "ProgressBar":
        return self

    def update(self, done_s: float, total_s: float | None) -> None:
        if not self._enabled:
            return
        if self._bar is None:
            # A pipe has no known length: then the bar shows audio time done and the rate.
            known = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]"
            unknown = "{desc}: {n:.0f} s audio done [{elapsed}, {rate_fmt}]"
            self._bar = tqdm(total=round(total_s, 1) if total_s else None, desc=self._label, unit="s",
                             file=sys.stderr, leave=False, dynamic_ncols=True,
                             bar_format=known if total_s else unknown)
        if self._bar.total and done_s > self._bar.total:
            self._bar.total = round(done_s, 1)  # the header's duration was an estimate
        self._bar.update(round(done_s, 1) - self._bar.n)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()
