"""The server's memory budget as an account: loaded models, one batch, and decoded audio.

Admission (429) follows from it. Every admitted request or job reserves the most decoded audio
it can ever hold: the segments it may queue ahead (the scheduler's backpressure), the batch it
is in, the decoder's chunk and the VAD's open span, or twice its whole length when that is
less (its samples in the rolling buffer and again as cut segments). A new one is admitted only
when the models, one smallest batch and every reservation, its own included, fit the budget;
the scheduler plans batches under the working budget less the reservations not yet filled. So
an admitted request is never starved of room for its audio or its batches by a later one.

Decoded audio is counted from the samples the works hold, not read from RSS; the models'
share is the resident memory less what is counted, and never less than it was last seen idle
(a fake probe in tests reports only models; a real RSS includes the audio too). Audio is
decoded into host memory: it counts against a CPU budget only (a GPU's budget is the GPU's
memory, where only batches go).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from tingxie import SAMPLE_RATE
from tingxie.engine.pipeline import CHUNK_S
from tingxie.memory.planning import RESERVE_FRACTION, MemoryPlanner
from tingxie.planner.memory_model import min_budget
from tingxie.planner.shapes import InputShape
from tingxie.server.work import Work

BYTES_PER_AUDIO_S = SAMPLE_RATE * 4  # float32 mono at 16 kHz


def decoded_audio_bound(shape: InputShape, queued_per_work: int, total_s: float | None) -> int:
    """The most decoded audio one work can hold at once, in bytes (see the module's text)."""
    seconds = (queued_per_work + 2) * shape.max_item_s + CHUNK_S
    if total_s is not None:
        seconds = min(seconds, 2 * total_s + 1.0)
    return int(seconds * BYTES_PER_AUDIO_S)


def audio_held_bytes(work: Work) -> int:
    """The samples of a work's queued and running segments (read under the scheduler's lock)."""
    return sum(segment.samples.nbytes for segment in work.pending) + work.in_flight_audio_bytes


@dataclass(frozen=True)
class MemoryFigures:
    """One reading of the account, in bytes: for admission, /metrics and the job status."""

    budget: int  # the user's total budget (or the default's), less the planner's reserve
    models: int  # loaded models and runtime
    batch: int  # room kept for one batch: one item of the longest length
    reserved: int  # decoded audio the admitted works may hold at most
    audio_held: int  # decoded audio they hold now

    @property
    def committed(self) -> int:
        return self.models + self.batch + self.reserved

    @property
    def unfilled(self) -> int:
        """Reserved room the admitted works have not filled yet: batches must leave it free."""
        return max(0, self.reserved - self.audio_held)


class MemoryAccount:
    """planner: the server's memory planner (None: a fake backend, no budget); works: the
    admitted works; batch_floor: the least memory a batch of the loaded models needs."""

    def __init__(self, planner: Callable[[], MemoryPlanner | None], works: Callable[[], Iterable[Work]],
                 batch_floor: Callable[[], int]):
        self._planner = planner
        self._works = works
        self._batch_floor = batch_floor
        self._idle_models: int = 0

    @property
    def enabled(self) -> bool:
        return self._planner() is not None

    def figures(self) -> MemoryFigures | None:
        planner = self._planner()
        if planner is None:
            return None
        works = list(self._works())
        held = sum(audio_held_bytes(work) for work in works)
        resident = planner.probe.current_bytes()
        if not works:
            self._idle_models = resident  # nothing decoded is held: all of it is models and runtime
        models = max(self._idle_models, resident - held if _on_host(planner) else resident)
        return MemoryFigures(budget=int(planner.total_budget_bytes * (1 - RESERVE_FRACTION)), models=models,
                             batch=self._batch_floor(), reserved=sum(work.reserve_bytes for work in works),
                             audio_held=held)

    def reserve_for(self, shape: InputShape, queued_per_work: int, total_s: float | None) -> int:
        """What a new work reserves: its decoded-audio bound where the budget is host memory."""
        planner = self._planner()
        return decoded_audio_bound(shape, queued_per_work, total_s) if planner and _on_host(planner) else 0

    def room_for(self, reserve_bytes: int) -> tuple[bool, MemoryFigures | None]:
        """Whether a new work reserving this much fits beside everything admitted."""
        figures = self.figures()
        return figures is None or figures.committed + reserve_bytes <= figures.budget, figures


def _on_host(planner: MemoryPlanner) -> bool:
    return planner.probe.device == "cpu"


def batch_floor(shape: InputShape, planner: MemoryPlanner | None) -> int:
    return 0 if planner is None else min_budget(shape, planner.model)
