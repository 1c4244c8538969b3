"""The thread that owns a model's backend: batches segments across all requests and jobs for it.

Each round: pick segments fairly across the works (fairness.py), grow the batch while the
planner says it fits the memory budget as one batch, run it on the one shared Executor
(which splits and retries on out-of-memory), and route the results back to their works.
Segment indices are per work; the backend sees globally unique ones, mapped back here.
Producers (producer.py) feed segments through offer(), which blocks while a work already
holds its share: backpressure keeps memory flat however many works are queued.
"""

from __future__ import annotations

from collections import Counter

import dataclasses
import itertools
import logging
import threading
import time
from typing import Callable, Protocol

from tingxie.backends.base import Backend
from tingxie.errors import OutOfMemoryError
from tingxie.engine.executor import Executor
from tingxie.memory.planning import MemoryPlanner
from tingxie.engine.batching import constraint_for
from tingxie.options import BatchOptions, DecodeOptions
from tingxie.planner import longest_prefix
from tingxie.planner.memory_model import min_budget
from tingxie.memory.resources import peak_rss_bytes
from tingxie.segments import AudioSegment, SegmentResult
from tingxie.server.api_errors import ApiError
from tingxie.server.fairness import admitted_lanes, fair_order
from tingxie.server.metrics import Metrics
from tingxie.server.store import FinishedSegment
from tingxie.server.work import Work

log = logging.getLogger("tingxie.server")
WINDOWS_PER_QUANTUM = 4  # a work of up to 4 full windows (2 min for Whisper) keeps its arrival order


class Sink(Protocol):
    def record(self, work: Work, finished: list[FinishedSegment]) -> None:
        """Make finished segments durable; called before the work counts them as done."""

    def settled(self, work: Work) -> None:
        """The work reached a terminal state; called once, outside the lock."""


class Scheduler:
    def __init__(self, backend: Backend, memory: MemoryPlanner | None, batch: BatchOptions, sink: Sink,
                 metrics: Metrics, *, max_active: int = 0, queued_per_work: int = 0,
                 quantum_s: float | None = None, cond: threading.Condition | None = None,
                 run_lock: threading.Lock | None = None, unfilled_reserve: Callable[[], int] = lambda: 0):
        # cond and run_lock are shared by the schedulers of several models (models_on_demand.py):
        # one lock over every work, and one batch at a time in the process (one memory budget).
        self.backend = backend
        self.memory = memory
        self.batch = batch  # resolved for the backend's device (Transcriber): its cap is set
        self.max_batch_size = batch.batch_cap()
        self.sink = sink
        self.metrics = metrics
        self.max_active = max_active
        self.queued_per_work = queued_per_work or self.max_batch_size
        self.quantum_s = WINDOWS_PER_QUANTUM * backend.shape.max_item_s if quantum_s is None else quantum_s
        self.executor = Executor(backend)
        # Recordings are interleaved, so each segment's text is made on its own (Paraformer: its
        # words punctuated into sentences); a backend without that stage keeps its pieces.
        self._segment_text = backend.segment_text
        self.executor.after_batch = memory.after_batch if memory else None  # the allocator's cache back between batches
        # decoded audio admitted works may still add (memory_account.py): batches leave it free
        self.unfilled_reserve = unfilled_reserve
        self._planned: int | None = None  # the working budget the last plan was made with
        self._batch_budget: int | None = None  # ... and the one of the batch running
        self.cond = cond or threading.Condition()
        self.run_lock = run_lock or threading.Lock()
        self.works: list[Work] = []  # not yet terminal, in admission order
        self._ids = itertools.count()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="tingxie-scheduler", daemon=True)

    # -- called by the service and producers ----------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        with self.cond:
            self._stopping = True
            self.cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def add(self, work: Work) -> None:
        with self.cond:
            self.works.append(work)
            self.cond.notify_all()

    def withdraw(self, work: Work) -> None:
        """Take back a work whose admission failed after add (nothing of it has run)."""
        with self.cond:
            if work in self.works:
                self.works.remove(work)
            self.cond.notify_all()

    def offer(self, work: Work, segment: AudioSegment, decoded_s: float) -> bool:
        """Queue a segment, waiting while the work holds its share; False once it should stop."""
        with self.cond:
            while len(work.pending) >= self.queued_per_work and not (work.terminal or self._stopping):
                self.cond.wait()
            if work.terminal or self._stopping:
                return False
            work.pending.append(segment)
            work.decoded_s = decoded_s
            self.cond.notify_all()
            return True

    def progress(self, work: Work, decoded_s: float) -> bool:
        """Decoding went on without a segment (silence); False once the producer should stop."""
        with self.cond:
            work.decoded_s = decoded_s
            return not (work.terminal or self._stopping)

    def produced_all(self, work: Work, decoded_s: float) -> None:
        with self.cond:
            if work.terminal or self._stopping:  # stopping: a durable job resumes at the next start
                return
            work.produced_all, work.decoded_s = True, decoded_s
            if work.total_s is None:
                work.total_s = decoded_s
            before = work.audio_done_s()
            done = work.complete and work.settle("succeeded")
            if done:
                self.works.remove(work)
                self.metrics.inc("tingxie_audio_seconds_done_total", max(0.0, work.audio_done_s() - before))
            self.cond.notify_all()
        if done:
            self.sink.settled(work)

    def end(self, work: Work, state: str, error: ApiError | None = None) -> bool:
        """Fail or cancel a work; False if it had already ended or the server is stopping."""
        with self.cond:
            ended = not self._stopping and work.settle(state, error)
            if ended:
                self.works.remove(work)
            self.cond.notify_all()
        if ended:
            self.sink.settled(work)
        return ended

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def queued_segments(self) -> int:
        with self.cond:
            return sum(len(w.pending) for w in self.works)

    # -- the scheduler thread ---------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self.cond:
                shrinks = self.memory.trace.shrinks if self.memory else 0  # before this batch's plan
                picked = self._pick()
                while not picked:
                    if self._stopping:
                        return
                    self.cond.wait()
                    shrinks = self.memory.trace.shrinks if self.memory else 0
                    picked = self._pick()
                now = time.time()
                for work in {w for w, _ in picked}:
                    if work.state == "queued":
                        work.state, work.started_at = "running", now
                    if work.shrinks_before is None:
                        work.shrinks_before = shrinks
                taken = {work: work.take(count) for work, count in Counter(w for w, _ in picked).items()}
                self._batch_budget = self._planned
                self.cond.notify_all()  # room for producers waiting to queue more
            try:
                with self.run_lock:
                    self._run(taken)
            except Exception as error:  # the scheduler outlives any one batch; its works fail, not hang
                log.exception("batch failed unexpectedly")
                self._fail_all(taken, ApiError(500, f"internal error ({type(error).__name__})"))

    def _fail_all(self, works, error: ApiError) -> None:
        """End each work as failed; an error while ending one (its sink) never stops this thread."""
        for work in works:
            try:
                self.end(work, "failed", error)
            except Exception:
                log.exception("ending %s failed", work.id)

    def _pick(self) -> list[tuple[Work, AudioSegment]]:
        lanes = admitted_lanes(self.works, self.max_active)
        limit = min(self.max_batch_size, self.executor.ceiling or self.max_batch_size)
        # One batch decodes with one set of options: the work served first chooses them, and
        # only works asking for the same ones join its batch.
        first = fair_order(lanes, self._cost, 1, self.quantum_s)
        if first:
            lanes = [lane for lane in lanes if lane.decode == first[0][0].decode]
        candidates = fair_order(lanes, self._cost, limit, self.quantum_s)
        return candidates[: self._fits(candidates)] if candidates else []

    def _cost(self, segment: AudioSegment) -> float:
        return self.backend.shape.padded_seconds([segment.duration])

    def _fits(self, candidates: list[tuple[Work, AudioSegment]]) -> int:
        """The longest prefix that runs as one batch under the batch rule and the budget now."""
        model = budget = None
        if self.memory is not None:
            try:
                model, budget = self.memory.model, self.memory.working_budget()
            except OutOfMemoryError:
                return 1  # the resident set fills the budget: one at a time, OOM retries if need be
            # admitted works' audio still to come keeps its room; one item of the longest length
            # always may run (admission kept room for it)
            budget = max(budget - self.unfilled_reserve(), min(budget, min_budget(self.backend.shape, model)))
        self._planned = budget
        constraint = constraint_for(self.backend.shape, self.batch, memory_model=model, working_budget_bytes=budget,
                                    ceiling=self.executor.ceiling)
        return longest_prefix(constraint, [segment.duration for _, segment in candidates])

    def _run(self, taken: dict[Work, list[AudioSegment]]) -> None:
        owners: dict[int, tuple[Work, AudioSegment]] = {}
        batch: list[AudioSegment] = []
        for work, segments in taken.items():
            for segment in segments:
                global_id = next(self._ids)
                owners[global_id] = (work, segment)
                batch.append(dataclasses.replace(segment, index=global_id))
        retries = self.executor.oom_retries
        started = time.perf_counter()
        results, errors = self._execute(batch, next(iter(taken)).decode)
        elapsed = time.perf_counter() - started
        retries = self.executor.oom_retries - retries
        self.metrics.inc("tingxie_oom_retries_total", retries)
        self.metrics.inc("tingxie_batches_total")
        self.metrics.observe("tingxie_batch_size", len(batch))
        self.metrics.inc("tingxie_busy_seconds_total", elapsed)

        failures = {owners[global_id][0]: _api_error(error) for global_id, error in errors.items()}
        finished: dict[Work, list[FinishedSegment]] = {work: [] for work in taken}
        for result in results:
            work, segment = owners[result.index]
            local = dataclasses.replace(self._segment_text(result), index=segment.index)
            finished[work].append(FinishedSegment(segment.index, segment.start, segment.end, local))
        for work, records in finished.items():
            if records and work not in failures and not work.terminal:
                try:
                    self.sink.record(work, records)  # durable before it counts as done
                except ApiError as error:  # storage failed (health.py): this work fails, the others go on
                    failures[work] = error
        done = self._route(taken, finished, failures, retries)
        for work in done:
            self.sink.settled(work)
        for work, error in failures.items():
            self._fail_all([work], error)

    def _execute(self, batch: list[AudioSegment], decode: DecodeOptions | None = None,
                 ) -> tuple[list[SegmentResult], dict[int, Exception]]:
        try:
            return self.executor.run(batch, decode), {}
        except Exception as error:
            if len(batch) == 1:
                return [], {batch[0].index: error}
        # Run the segments one by one so that only the works at fault fail.
        results: list[SegmentResult] = []
        errors: dict[int, Exception] = {}
        for segment in batch:
            try:
                results += self.executor.run([segment], decode)
            except Exception as error:
                errors[segment.index] = error
        return results, errors

    def _route(self, taken, finished, failures, oom_retries: int) -> list[Work]:
        """Results into their works; returns the works this batch completed."""
        done: list[Work] = []
        with self.cond:
            peak = peak_rss_bytes()
            planned = self._batch_budget
            for work, segments in taken.items():
                if work.terminal or work in failures:
                    continue  # cancelled while its batch ran: the results are dropped
                before = work.audio_done_s()
                for segment in segments:
                    work.in_flight.pop(segment.index, None)
                    work.in_flight_audio_bytes -= segment.samples.nbytes
                    work.served_s += self._cost(segment)
                for record in finished[work]:
                    work.finished[record.index] = record
                work.batches += 1
                work.oom_retries += oom_retries  # a split batch held this work's segments
                work.peak_memory_bytes = max(work.peak_memory_bytes, peak)
                self._note_budget(work, planned)
                if work.complete and work.settle("succeeded"):
                    self.works.remove(work)
                    done.append(work)
                self.metrics.inc("tingxie_audio_seconds_done_total", max(0.0, work.audio_done_s() - before))
            self.cond.notify_all()
        return done


    def _note_budget(self, work: Work, planned: int | None) -> None:
        """The adaptive budget as this work saw it (its job status)."""
        if self.memory is None:
            return
        if planned is not None:
            lowest = work.lowest_batch_memory_bytes
            work.lowest_batch_memory_bytes = planned if lowest is None else min(lowest, planned)
        work.budget_shrinks = work.earlier_shrinks + self.memory.trace.shrinks - (work.shrinks_before or 0)


def _api_error(error: Exception) -> ApiError:
    if isinstance(error, OutOfMemoryError):
        return ApiError(500, f"out of memory: {error}", code="out_of_memory")
    log.error("backend failed: %s", error, exc_info=error)
    return ApiError(500, f"the model failed on this audio ({type(error).__name__})", code="backend_error")
