"""Runs batches on a backend and reports back; never loses a segment to an out-of-memory error.

When a batch does not fit, it is split in halves and each half retried, down to single
segments; the largest size that failed lowers the ceiling so the same mistake is not paid for
again. Pressure passes (another process frees memory, a transient spike ends), so after a run of
successful batches the ceiling doubles again, until it no longer binds (vLLM re-grows the same
way): one out-of-memory error does not halve a long-lived server's batches for its whole life.
Only a single segment that cannot run is fatal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

from tingxie.backends.base import Backend, BackendOutOfMemory
from tingxie.errors import OutOfMemoryError
from tingxie.options import DecodeOptions
from tingxie.planner import PaddingTally
from tingxie.segments import AudioSegment, SegmentResult

log = logging.getLogger(__name__)
RELAX_AFTER = 16
MAX_CEILING = 1024  # the largest --max-batch-size: a ceiling this high no longer binds  # successful batches under a lowered ceiling before it doubles again


@dataclass
class Executor:
    backend: Backend
    ceiling: int | None = None  # most items per batch since the last out-of-memory error
    relax_after: int = RELAX_AFTER
    successes_under_ceiling: int = 0
    ceiling_raises: int = 0
    oom_retries: int = 0
    batches_run: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    padding: PaddingTally = field(default_factory=PaddingTally)  # of the batches run, as run
    after_batch: Callable[[], None] | None = None  # e.g. hand freed memory back to the OS

    def run(self, batch: Sequence[AudioSegment], decode: DecodeOptions | None = None) -> list[SegmentResult]:
        """Transcribe a batch, splitting as needed; results are in the batch's order. decode:
        the batch's own decode options (a backend with per_batch_decode); None: the backend's."""
        if not batch:
            return []
        if self.ceiling is not None and len(batch) > self.ceiling:
            # the ceiling as it is now: running a chunk may lower or raise it, and chunks must
            # neither overlap nor leave a gap
            size = self.ceiling
            results: list[SegmentResult] = []
            for start in range(0, len(batch), size):
                results += self.run(batch[start : start + size], decode)
            return results
        try:
            results = (self.backend.transcribe_batch(batch) if decode is None
                       else self.backend.transcribe_batch(batch, decode))
        except BackendOutOfMemory as error:
            return self._split_after_oom(batch, error, decode)
        finally:
            if self.after_batch:
                self.after_batch()
        self._check(batch, results)
        self._relax()
        self.batches_run += 1
        self.batch_sizes.append(len(batch))
        self.padding.add([item.duration for item in batch], self.backend.shape)
        return results

    def _split_after_oom(self, batch: Sequence[AudioSegment], error: BackendOutOfMemory,
                         decode: DecodeOptions | None = None) -> list[SegmentResult]:
        if len(batch) == 1:
            item = batch[0]
            raise OutOfMemoryError(
                f"out of memory on a single {item.duration:.1f} s segment at {item.start:.1f} s: "
                f"no smaller batch exists ({error})"
            ) from error
        self.oom_retries += 1
        half = (len(batch) + 1) // 2  # 3 fails -> 2 + 1: the larger half is the new ceiling
        self.ceiling = half if self.ceiling is None else min(self.ceiling, half)
        self.successes_under_ceiling = 0
        log.warning("out of memory on a batch of %d; retrying as %d + %d, ceiling now %d",
                    len(batch), half, len(batch) - half, self.ceiling)
        return self.run(batch[:half], decode) + self.run(batch[half:], decode)

    def _relax(self) -> None:
        if self.ceiling is None:
            return
        self.successes_under_ceiling += 1
        if self.successes_under_ceiling < self.relax_after:
            return
        self.successes_under_ceiling = 0
        self.ceiling_raises += 1
        # Doubling back past the largest batch that ever failed would just fail again at once if
        # the pressure were still there; relax_after batches of quiet say it is not.
        self.ceiling = None if self.ceiling >= MAX_CEILING else self.ceiling * 2
        log.info("%d batches without running out of memory; ceiling raised to %s", self.relax_after,
                 self.ceiling if self.ceiling is not None else "none")

    @staticmethod
    def _check(batch: Sequence[AudioSegment], results: list[SegmentResult]) -> None:
        expected = [item.index for item in batch]
        got = [result.index for result in results]
        if got != expected:
            raise RuntimeError(f"backend returned results for {got}, expected {expected}")
