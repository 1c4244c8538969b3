"""The server's state: admitted works, the job store and the scheduler, behind plain methods.

The HTTP layer (app.py) calls submit / job_view / result / cancel; the scheduler calls back
record (make finished segments durable) and settled (a work ended). On start, jobs the store
holds as unfinished are resumed from their last finished segment.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from pathlib import Path

from tingxie.engine.pipeline import Transcriber
from tingxie.errors import OptionError
from tingxie.memory.cpu import release_freed_memory
from tingxie.memory.resources import peak_rss_bytes
from tingxie.options import DecodeOptions, VadOptions
from tingxie.segments import RunStats, Transcript
from tingxie.server.api_errors import ApiError
from tingxie.server.config import ServerConfig
from tingxie.server.form import remove_quietly
from tingxie.server.formats import build_transcript, words_of
from tingxie.server.health import StorageHealth, is_storage_error, storage_unavailable
from tingxie.server.job_view import JobSnapshot, record_view, stored_transcript
from tingxie.server.limits import memory_full_error, queue_full_error
from tingxie.server.memory_account import (BYTES_PER_AUDIO_S, MemoryAccount, audio_held_bytes, batch_floor,
                                           job_memory_view, resume_memory_view)
from tingxie.server.metrics import Metrics
from tingxie.server.models_on_demand import Engine, ModelPool
from tingxie.server.producer import start_producer
from tingxie.server.request_options import request_decode, request_vad
from tingxie.server.scheduler import Scheduler
from tingxie.server.speakers import diarize_options, label, new_diarizer, turns_to_json
from tingxie.server.store import FinishedSegment, JobRecord, JobStore
from tingxie.server.work import RequestOptions, Work

log = logging.getLogger("tingxie.server")


class TranscriptionService:
    def __init__(self, transcriber: Transcriber, config: ServerConfig, metrics: Metrics):
        self.config = config
        self.metrics = metrics
        self.store = JobStore(config.db_path)
        # One lock over every work, and one batch at a time, shared by every model's scheduler.
        self.cond, run_lock = threading.Condition(), threading.Lock()
        cond = self.cond

        def make_scheduler(loaded: Transcriber) -> Scheduler:
            return Scheduler(loaded.backend, loaded.memory, loaded.options.batch, self, metrics,
                             max_active=config.max_active, queued_per_work=config.queued_segments_per_job,
                             quantum_s=config.fairness_quantum_s, cond=cond, run_lock=run_lock,
                             unfilled_reserve=self._unfilled_reserve)

        self.live: dict[str, Work] = {}  # admitted and not yet settled
        # loaded models + one batch + the decoded audio of admitted works, against the budget
        self.memory = MemoryAccount(lambda: self.models.memory, lambda: list(self.live.values()),
                                    lambda: max((batch_floor(e.scheduler.backend.shape, e.transcriber.memory)
                                                 for e in list(self.models.engines.values())), default=0), cond)
        # The models it serves: the one it started with, more loaded on demand (models_on_demand.py),
        # each load asking the same account for room.
        self.models = ModelPool(transcriber, make_scheduler, self.memory, servable=(*config.models, *config.preload),
                                aliases=config.model_aliases)
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._stopped = False
        self.stop_hooks: list = []  # called first on stop (the web page's own runner)
        self.finished_hooks: list = []  # called when a job's final state is written (retention)
        # Storage that cannot be written is a state (health.py): final states that could not be
        # written wait here, shown from memory, and are written once the storage recovers.
        self.health = StorageHealth({"job database": Path(config.db_path).parent, "upload folder": config.uploads},
                                    self.store.probe)
        self.health.recovery_hooks.append(self._write_unwritten)
        self._unwritten: dict[str, tuple[Work, dict]] = {}

    @property
    def model_name(self) -> str:
        """The default model: the one it started with, for requests that name none or an alias."""
        return self.models.default

    @property
    def scheduler(self) -> Scheduler:
        """The most recently used model's scheduler (its cond is every scheduler's)."""
        return self.models.primary.scheduler

    @property
    def transcriber(self) -> Transcriber:
        """The most recently used model's Transcriber (every model has the server's options)."""
        return self.models.primary.transcriber

    def queued_segments(self) -> int:
        return sum(engine.scheduler.queued_segments() for engine in list(self.models.engines.values()))

    def start(self) -> None:
        self.models.start()
        for name in self.config.preload:
            try:
                self.models.preload(name)
            except ApiError as error:  # an unknown model, or one the budget cannot hold: the server does not start
                self.stop()
                raise OptionError(f"--preload {name}: {error.message}") from None
        unfinished = self.store.unfinished()
        self._sweep_uploads({Path(record.upload_path or "").name for record in unfinished})
        for record in unfinished:
            self._resume(record)

    def _sweep_uploads(self, keep: set[str]) -> None:
        """Uploads no unfinished job owns: requests cut off by a crash, jobs that never got a row."""
        folder = self.config.uploads
        for path in folder.glob("*.upload") if folder.is_dir() else ():
            if path.name not in keep:
                remove_quietly(path)

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            for hook in self.stop_hooks:
                hook()
            self.models.stop()
            self.store.close()

    # -- admission ---------------------------------------------------------------------------

    def check_options(self, options: RequestOptions, engine: Engine | None = None,
                      ) -> tuple[DecodeOptions | None, VadOptions | None]:
        """The request's decode and VAD options, or a 400 for what the model cannot honour. A
        backend with per-batch decode options decodes each request with its own (batches group
        requests that share them); another's decode options are fixed at load. Before the model
        is chosen (engine None) only what can be told without loading it is checked."""
        diarize_options(options)  # speaker counts that do not hold together: a 400 before the upload is kept
        name = self.models.resolve(options.model)
        engine = engine or self.models.engines.get(name)
        if engine is None:
            return None, None  # checked again once loaded, at submit
        loaded = engine.transcriber
        return request_decode(options, loaded.options.decode, loaded.backend), request_vad(options, loaded)

    def check_room(self) -> None:
        """429 when the queue is full or the memory budget is (memory_account.py), 503 while
        storage cannot be written: before an upload touches the disk, and again at submit."""
        problem = self.health.reason()
        if problem is not None:
            self.metrics.inc("tingxie_rejected_total", reason="storage")
            raise storage_unavailable(problem)
        if len(self.live) >= self.config.max_queue:
            self.metrics.inc("tingxie_rejected_total", reason="queue_full")
            raise queue_full_error(self._retry_after_s(), self.config.max_queue)
        self._check_memory(BYTES_PER_AUDIO_S)  # its length is not known yet: at least one second of audio

    def _check_memory(self, reserve_bytes: int, work: Work | None = None) -> None:
        """429 when the budget cannot hold what a new work may decode beside everything admitted;
        with a work, its reservation is made at once (under the same locks as the check)."""
        with self.cond:  # every work's fields are under it; check and reservation are one step
            fits, figures = self.memory.room_for(reserve_bytes)
            if fits and work is not None:
                work.reserve_bytes = reserve_bytes
        if not fits:
            self.metrics.inc("tingxie_rejected_total", reason="memory_full")
            raise memory_full_error(self._retry_after_s(), figures, reserve_bytes)

    def _unfilled_reserve(self) -> int:
        """Called by the schedulers under the shared lock."""
        return sum(max(0, work.reserve_bytes - audio_held_bytes(work)) for work in list(self.live.values()))

    def memory_figures(self):
        """The account now (None without a budget): /metrics."""
        with self.cond:
            return self.memory.figures()

    def submit(self, job_id: str, options: RequestOptions, upload: Path, total_s: float | None, *,
               durable: bool) -> Work:
        with self._lock:
            self.check_room()
            work = Work(job_id, options, upload, durable, total_s, next(self._seq))
            self.live[job_id] = work  # counts against the queue while its model loads
        try:
            # Its model, loaded if need be (perhaps waiting for room: never under the lock its
            # running works take to end); a 400 if the model cannot honour the options.
            self._bind(work)
            scheduler = work.engine.scheduler
            self._check_memory(self.memory.reserve_for(scheduler.backend.shape, scheduler.queued_per_work, total_s), work)
            if durable:
                try:
                    self.store.create(job_id, options.to_json(), str(upload), total_s, work.created_at)
                except Exception as error:
                    if not is_storage_error(error):
                        raise
                    raise self.health.failed("job database", error) from None
        except BaseException:
            if work.engine is not None:
                work.engine.scheduler.withdraw(work)  # admitted to no one: its model is free again
            with self._lock:
                self.live.pop(job_id, None)
            raise
        self._start(work)
        self.metrics.inc("tingxie_submitted_total", kind="job" if durable else "request")
        log.info("submitted", extra={"fields": {"id": job_id, "durable": durable, "audio_s": total_s,
                                                "file": options.filename}})
        return work

    def _retry_after_s(self) -> int:
        """When a slot may free: the least remaining audio of a live work at the measured speed."""
        busy = self.metrics.value("tingxie_busy_seconds_total")
        speed = self.metrics.value("tingxie_audio_seconds_done_total") / busy if busy > 0 else 1.0
        with self.cond:
            remaining = [max(0.0, (w.total_s or w.decoded_s) - w.audio_done_s()) for w in self.live.values()]
        return int(min(300, max(1, math.ceil(min(remaining, default=1.0) / max(speed, 1e-3)))))

    def _bind(self, work: Work) -> None:
        """Give the work its model's engine and its decode and VAD options; the work joins the
        engine's scheduler at once, so the model is busy (never unloaded) from here on."""
        work.diarizer = new_diarizer(work.options)  # a 400/501 now, before the work joins anything
        def admit(engine: Engine) -> None:
            work.decode, work.vad = self.check_options(work.options, engine)
            work.engine = engine
            engine.scheduler.add(work)

        self.models.use(self.models.resolve(work.options.model), admit)

    def _start(self, work: Work) -> None:
        start_producer(work, work.engine.scheduler, work.engine.transcriber, self.config.max_duration_s)

    def _resume(self, record: JobRecord) -> None:
        work = Work(record.id, RequestOptions.from_json(record.options), Path(record.upload_path or ""), True,
                    record.audio_total_s, next(self._seq), created_at=record.created_at,
                    processing_s=record.processing_s)
        work.first_started_at, work.done_floor_s = record.started_at, record.audio_done_s
        work.batches, work.oom_retries = record.batches, record.oom_retries
        resume_memory_view(work, record.memory)
        with self._lock:
            self.live[work.id] = work
        try:
            self._bind(work)
        except ApiError as error:  # the server now runs with other settings: the job cannot go on
            work.engine = self.models.primary
            self.scheduler.add(work)
            self.scheduler.end(work, "failed", error)
            return
        with self.cond:
            for finished in self.store.segments(record.id):
                work.finished[finished.index] = finished
                work.served_s += work.engine.transcriber.backend.shape.padded_seconds([finished.end - finished.start])
        log.info("resumed", extra={"fields": {"id": work.id, "segments_done": len(work.finished)}})
        if not work.upload.is_file():
            work.engine.scheduler.end(work, "failed", ApiError(500, "the upload of this job is gone",
                                                               code="upload_lost"))
            return
        self._start(work)

    def cancel(self, job_id: str) -> bool:
        work = self.live.get(job_id)
        return work is not None and work.engine is not None and work.engine.scheduler.end(work, "cancelled")

    # -- callbacks from the scheduler ------------------------------------------------------------

    def record(self, work: Work, finished: list[FinishedSegment]) -> None:
        if not work.durable:
            return
        with self.cond:
            done_s = work.audio_done_s(finishing=frozenset(f.index for f in finished))
            fields = {"state": "running", "audio_done_s": done_s, "processing_s": work.elapsed_s(),
                      "peak_memory_bytes": peak_rss_bytes(), "batches": work.batches + 1,  # + this batch
                      "memory": job_memory_view(work)}
            if work.first_started_at is None:
                work.first_started_at = fields["started_at"] = work.started_at
        try:
            self.store.record(work.id, finished, **fields)
        except Exception as error:  # the scheduler fails this work with the 503, and goes on
            if not is_storage_error(error):
                raise
            raise self.health.failed("job database", error) from None

    def settled(self, work: Work) -> None:
        try:
            self._write_final(work)
        finally:  # whatever the storage does, the work ends in memory and its waiters wake
            self._forget(work)

    def _write_final(self, work: Work) -> None:
        if not work.durable:
            return
        transcript = self.transcript(work) if work.state == "succeeded" else None
        error = work.error
        fields = dict(state=work.state, finished_at=work.finished_at,
                      audio_total_s=work.total_s, audio_done_s=work.audio_done_s(),
                      processing_s=work.elapsed_s(), peak_memory_bytes=max(work.peak_memory_bytes, peak_rss_bytes()),
                      segments_total=len(work.finished), language=transcript and transcript.language,
                      batches=work.batches, oom_retries=work.oom_retries,
                      error=error and error.message, error_status=error and error.status)
        with self.cond:
            fields["memory"] = job_memory_view(work)  # the row keeps the budget's figures (job_view.py)
        if transcript is not None and work.diarizer is not None:  # the result keeps its speakers after a restart
            fields["speaker_turns"] = turns_to_json(work.diarizer.speaker_timeline().turns)
        try:
            self.store.update(work.id, **fields)
        except Exception as failure:
            if not is_storage_error(failure):
                raise
            self._unwritten[work.id] = (work, fields)  # shown from memory, written on recovery
            self.health.failed("job database", failure)

    def _write_unwritten(self) -> None:
        """The final states a full disk kept out of the database (a health recovery hook)."""
        for job_id, (_, fields) in list(self._unwritten.items()):
            self.store.update(job_id, **fields)
            self._unwritten.pop(job_id, None)

    def _forget(self, work: Work) -> None:
        remove_quietly(work.upload)
        with self._lock:
            self.live.pop(work.id, None)
            idle = not self.live
        if idle:  # what the producers' and handlers' threads freed goes back to the system (issue 20)
            release_freed_memory()
        if work.durable:
            for hook in self.finished_hooks:
                hook()
        self.metrics.inc("tingxie_finished_total", state=work.state, kind="job" if work.durable else "request")
        log.info("finished", extra={"fields": {
            "id": work.id, "state": work.state, "audio_s": work.total_s, "wall_s": round(work.elapsed_s(), 3),
            "speed": round(work.speed(), 3), "batches": work.batches,
            "error": work.error and work.error.message}})
        work.notify_done()

    # -- reading -------------------------------------------------------------------------------

    def transcript(self, work: Work) -> Transcript:
        stats = RunStats(audio_seconds=work.total_s or work.decoded_s, wall_seconds=work.elapsed_s(),
                         peak_rss_bytes=work.peak_memory_bytes, batches=work.batches, segments=len(work.finished),
                         oom_retries=work.oom_retries, budget_shrinks=work.budget_shrinks,
                         lowest_batch_memory_bytes=work.lowest_batch_memory_bytes)
        model = work.engine.name if work.engine is not None else self.model_name
        transcript = build_transcript(work.finished.values(), source=work.options.filename, model=model, stats=stats)
        if work.diarizer is not None:  # its timeline was made by the producer before the work succeeded
            label(transcript, words_of(work.finished.values()), work.diarizer.speaker_timeline().turns)
        return transcript

    def stored_transcript(self, record: JobRecord) -> Transcript:
        return stored_transcript(self.store, record, self.model_name)

    def job_view(self, job_id: str) -> dict | None:
        work = self.live.get(job_id) or self._unwritten.get(job_id, (None,))[0]
        if work is not None and work.durable:
            with self.cond:
                return JobSnapshot(
                    job_id=work.id, state=work.state, options=work.options, created_at=work.created_at,
                    started_at=work.first_started_at or work.started_at, finished_at=work.finished_at,
                    audio_done_s=work.audio_done_s(), audio_total_s=work.total_s, segments_done=len(work.finished),
                    speed=work.speed(), peak_memory_bytes=work.peak_memory_bytes or None,
                    error=work.error and work.error.message, error_status=work.error and work.error.status,
                    wall_s=work.elapsed_s(), batches=work.batches, oom_retries=work.oom_retries,
                    memory=job_memory_view(work),
                ).view()
        record = self.store.get(job_id)
        return None if record is None else record_view(record, self.store.count_segments(job_id))
