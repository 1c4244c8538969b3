"""Jobs the server's loaded model cannot run: another model, language, batching or budget.

The server's scheduler owns one backend with options fixed at start; a page job that asks for
something else runs here, one at a time on one thread, with a Transcriber loaded for its
options (the last one is kept for the next job). These jobs live in their own SQLite store
(the server's JobStore class, a second file), so the page lists them, shows their progress
after a reload, and a server restart resumes them from their last finished window.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Callable

from tingxie.errors import TingxieError
from tingxie.options import DiarizeOptions, TranscribeOptions
from tingxie.engine.pipeline import Transcriber
from tingxie.memory.resources import peak_rss_bytes
from tingxie.segments import Transcript
from tingxie.server.api_errors import ApiError
from tingxie.server.form import remove_quietly
from tingxie.server.formats import words_of
from tingxie.server.limits import duration_error
from tingxie.server.job_view import record_view, stored_transcript
from tingxie.server.speakers import turns_of_labelled
from tingxie.server.store import FinishedSegment, JobStore

log = logging.getLogger("tingxie.ui")
Loader = Callable[[TranscribeOptions], Transcriber]


class _Stopped(Exception):
    """Raised from the progress callback: the job was cancelled or the server is stopping."""


def transcribe_options(options: dict, base: TranscribeOptions | None = None) -> TranscribeOptions:
    """A page job's stored choices over the server's own options (its command line: device,
    threads, VAD, ...), as the engine's options."""
    base = base or TranscribeOptions()
    return dataclasses.replace(
        base,
        model=dataclasses.replace(base.model, name=options["model"]),
        decode=dataclasses.replace(base.decode, language=options.get("language"),
                                   initial_prompt=options.get("prompt") or base.decode.initial_prompt,
                                   temperature=options.get("temperature") or base.decode.temperature,
                                   timestamps=base.decode.timestamps or bool(options.get("word_timestamps"))),
        batch=dataclasses.replace(base.batch, batch_size_s=options.get("batch_size_s"),
                                  memory_budget=options.get("memory_budget")),
        diarize=DiarizeOptions(enabled=options.get("diarize", False), speakers=options.get("speakers")),
    )


class PageRunner:
    def __init__(self, store: JobStore, load: Loader = Transcriber, max_duration_s: float | None = None,
                 base: TranscribeOptions | None = None):
        self.store = store
        self._base = base or TranscribeOptions()
        self._load = load
        self._max_duration_s = max_duration_s
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._cancelled: set[str] = set()
        self._stopping = threading.Event()
        self._loaded: tuple[TranscribeOptions, Transcriber] | None = None
        self._thread = threading.Thread(target=self._loop, name="tingxie-page-runner", daemon=True)

    def start(self) -> None:
        for record in self.store.unfinished():  # cut off by a stop: resume after their stored windows
            self._queue.put(record.id)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.store.close()

    def submit(self, job_id: str, options: dict, upload: Path, total_s: float | None) -> None:
        self.store.create(job_id, options, str(upload), total_s, time.time())
        self._queue.put(job_id)

    def cancel(self, job_id: str) -> None:
        self._cancelled.add(job_id)
        record = self.store.get(job_id)
        if record is not None and record.state == "queued":
            self._end(job_id, Path(record.upload_path or ""), state="cancelled")

    def view(self, job_id: str) -> dict | None:
        record = self.store.get(job_id)
        if record is None:
            return None
        view = record_view(record, self.store.count_segments(job_id))
        return view | {"model": record.options.get("model")}

    def transcript(self, job_id: str) -> Transcript | None:
        record = self.store.get(job_id)
        if record is None or record.state != "succeeded":
            return None
        transcript = stored_transcript(self.store, record, record.options.get("model", ""))
        if record.options.get("word_timestamps"):  # asked for: the JSON file has them
            transcript.words = words_of(self.store.segments(job_id))
        return transcript

    # -- the runner thread -------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return
            try:
                self._run(job_id)
            except Exception:  # the runner outlives any one job
                log.exception("page job %s failed unexpectedly", job_id)

    def _transcriber(self, options: TranscribeOptions) -> Transcriber:
        if self._loaded is None or self._loaded[0] != options:
            self._loaded = None  # free the previous model before loading the next
            self._loaded = (options, self._load(options))
        return self._loaded[1]

    def _run(self, job_id: str) -> None:
        record = self.store.get(job_id)
        if record is None or record.state not in ("queued", "running"):
            return
        upload = Path(record.upload_path or "")
        if not upload.is_file():
            self._end(job_id, upload, state="failed", error="the uploaded file of this job is gone")
            return
        stored = {f.index: f for f in self.store.segments(job_id)}
        earlier_s, started = record.processing_s, time.perf_counter()
        self.store.update(job_id, state="running", started_at=record.started_at or time.time())

        def progress(done_s: float, total_s: float | None) -> None:
            if job_id in self._cancelled or self._stopping.is_set():
                raise _Stopped
            if self._max_duration_s is not None and done_s > self._max_duration_s:
                raise duration_error(done_s, self._max_duration_s, at_least=True)
            self.store.update(job_id, audio_done_s=max(done_s, record.audio_done_s), audio_total_s=total_s,
                              processing_s=earlier_s + time.perf_counter() - started,
                              peak_memory_bytes=peak_rss_bytes())

        def on_window(window) -> None:
            self.store.record(job_id, [_finished(result) for result in window.results])

        try:
            transcriber = self._transcriber(transcribe_options(record.options, self._base))
            transcript = transcriber.transcribe(
                str(upload), progress=progress, on_window=on_window,
                recorded=lambda index: stored[index].result if index in stored else None)
        except _Stopped:
            if job_id in self._cancelled:
                self._end(job_id, upload, state="cancelled")
            return  # stopping: the job stays unfinished and resumes at the next start
        except ApiError as error:
            self._end(job_id, upload, state="failed", error=error.message, status=error.status)
            return
        except TingxieError as error:
            self._end(job_id, upload, state="failed", error=str(error), status=400)
            return
        except Exception as error:
            log.exception("page job %s failed", job_id)
            self._end(job_id, upload, state="failed", error=f"internal error ({type(error).__name__})", status=500)
            return
        stats = transcript.stats
        self._end(job_id, upload, state="succeeded", audio_total_s=stats.audio_seconds,
                  audio_done_s=stats.audio_seconds, processing_s=earlier_s + stats.wall_seconds,
                  peak_memory_bytes=stats.peak_rss_bytes, segments_total=stats.segments,
                  language=transcript.language, batches=record.batches + stats.batches,
                  oom_retries=record.oom_retries + stats.oom_retries,
                  speaker_turns=turns_of_labelled(transcript.segments) if record.options.get("diarize") else None)

    def _end(self, job_id: str, upload: Path, *, state: str, error: str | None = None, status: int | None = None,
             **fields) -> None:
        self.store.update(job_id, state=state, finished_at=time.time(), error=error, error_status=status, **fields)
        self._cancelled.discard(job_id)
        remove_quietly(upload)


def _finished(result) -> FinishedSegment:
    """The stored form of a window's result; its span is that of its text pieces."""
    starts = [piece.start for piece in result.pieces]
    ends = [piece.end for piece in result.pieces]
    return FinishedSegment(result.index, min(starts, default=0.0), max(ends, default=0.0), result)
