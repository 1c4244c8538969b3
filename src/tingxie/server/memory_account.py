"""The server's memory budget as an account: loaded models, one batch, and decoded audio.

Admission (429) follows from it. Every admitted request or job reserves the most decoded audio
it can ever hold: the segments it may queue ahead (the scheduler's backpressure), the batch it
is in, the decoder's chunk and the VAD's open span, or twice its whole length when that is
less (its samples in the rolling buffer and again as cut segments). A new one is admitted only
when the models, one smallest batch and every reservation, its own included, fit the budget;
the scheduler plans batches under the working budget less the reservations not yet filled. So
an admitted request is never starved of room for its audio or its batches by a later one.

Loading a model on demand (models_on_demand.py) asks the same account: its weights must fit
beside the loaded models, one batch and every reservation, so a load never takes the room an
admitted request's audio was promised.

Decoded audio is counted from the samples the works hold, not read from RSS; the models'
share is the resident memory less what is counted, and never less than it was last seen with
no audio held since the models last changed (a fake probe in tests reports only models; a
real RSS includes the audio too). Audio is decoded into host memory: it counts against a CPU
budget only (a GPU's budget is the GPU's memory, where only batches go). A work stops counting
the moment it ends (its model is idle then, and may be unloaded).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Iterable

from tingxie import SAMPLE_RATE
from tingxie.engine.pipeline import CHUNK_S
from tingxie.memory.planning import RESERVE_FRACTION, MemoryPlanner
from tingxie.memory.sizes import format_bytes
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

    def describe(self) -> str:
        """The account in words, for the errors that refuse something because of it."""
        return (f"the budget of {format_bytes(self.budget)} holds the loaded models and a batch "
                f"({format_bytes(self.models + self.batch)}) and the decoded audio of the requests and jobs "
                f"admitted ({format_bytes(self.reserved)})")


class MemoryAccount:
    """planner: the server's memory planner (None: a fake backend, no budget); works: the
    admitted works; batch_floor: the least memory a batch of the loaded models needs; cond: the
    schedulers' shared condition, under which every work's fields change (the account reads
    them under it, and a load waiting for room waits on it)."""

    def __init__(self, planner: Callable[[], MemoryPlanner | None], works: Callable[[], Iterable[Work]],
                 batch_floor: Callable[[], int], cond: threading.Condition | None = None):
        self._planner = planner
        self._works = works
        self._batch_floor = batch_floor
        self.cond = cond or threading.Condition()
        self._idle_models: int = 0

    @property
    def enabled(self) -> bool:
        return self._planner() is not None

    def figures(self) -> MemoryFigures | None:
        planner = self._planner()
        if planner is None:
            return None
        with self.cond:
            works = [work for work in self._works() if not work.terminal]
            held = sum(audio_held_bytes(work) for work in works)
            reserved = sum(work.reserve_bytes for work in works)
        resident = planner.probe.current_bytes()
        if not held:
            self._idle_models = resident  # nothing decoded is held: all of it is models and runtime
        models = max(self._idle_models, resident - held if _on_host(planner) else resident)
        return MemoryFigures(budget=int(planner.total_budget_bytes * (1 - RESERVE_FRACTION)), models=models,
                             batch=self._batch_floor(), reserved=reserved, audio_held=held)

    def models_changed(self) -> None:
        """A model was loaded or unloaded: what was resident with no audio held is no floor now."""
        self._idle_models = 0

    def reserve_for(self, shape: InputShape, queued_per_work: int, total_s: float | None) -> int:
        """What a new work reserves: its decoded-audio bound where the budget is host memory."""
        planner = self._planner()
        return decoded_audio_bound(shape, queued_per_work, total_s) if planner and _on_host(planner) else 0

    def room_for(self, extra_bytes: int, batch_floor: int = 0) -> tuple[bool, MemoryFigures | None]:
        """Whether extra_bytes more fit beside everything admitted: a new work's reservation, or
        a model's weights before its load (their expected size). batch_floor: a model just
        loaded (resident now) needs room for its own least batch where that is the larger."""
        figures = self.figures()
        if figures is None:
            return True, None
        return figures.committed + max(0, batch_floor - figures.batch) + extra_bytes <= figures.budget, figures

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Until predicate() holds (checked each time a work moves or ends) or the time is up."""
        with self.cond:
            return self.cond.wait_for(predicate, timeout=max(0.0, timeout_s))


def job_memory_view(work: Work) -> dict | None:
    """The budget as a work sees it (read under the schedulers' lock): the user's, the working
    budget the last batch of its model was planned with, the least one of its own batches had,
    the shrinks since its first batch (over every run of a resumed job), and its decoded audio
    held and reserved. The job's row keeps it (store.py), as of its last batch and its end."""
    planner = work.engine.transcriber.memory if work.engine is not None else None
    if planner is None:
        return None
    return {"budget_bytes": planner.total_budget_bytes, "working_budget_bytes": planner.trace.planned,
            "lowest_working_budget_bytes": work.lowest_batch_memory_bytes, "budget_shrinks": work.budget_shrinks,
            "decoded_audio_bytes": audio_held_bytes(work), "reserved_audio_bytes": work.reserve_bytes}


def resume_memory_view(work: Work, stored: dict | None) -> None:
    """A resumed job goes on from its row's figures: the lowest working budget and the shrinks
    of its earlier runs (this process's planner counts its own from zero)."""
    if stored:
        work.earlier_shrinks = work.budget_shrinks = stored.get("budget_shrinks") or 0
        work.lowest_batch_memory_bytes = stored.get("lowest_working_budget_bytes")


def _on_host(planner: MemoryPlanner) -> bool:
    return planner.probe.device == "cpu"


def batch_floor(shape: InputShape, planner: MemoryPlanner | None) -> int:
    return 0 if planner is None else min_budget(shape, planner.model)
