"""One thread per request or job: decode + VAD, feeding segments to the scheduler.

The scheduler's offer() blocks while the work already holds its share of decoded segments,
so a long upload is decoded only as fast as it is transcribed. A resumed job decodes again
from the start (the VAD is deterministic, so indices match) and skips the segments whose
results are already stored. A diarized work's segments pass through its own diarization stage
on the way (server/speakers.py).
"""

from __future__ import annotations

import logging
import threading
from typing import Iterable, Iterator

import numpy as np

from tingxie import SAMPLE_RATE
from tingxie.audio.decode import decode_chunks
from tingxie.errors import AudioDecodeError
from tingxie.engine.pipeline import CHUNK_S, Transcriber
from tingxie.engine.streaming import StreamState
from tingxie.server.api_errors import ApiError, bad_request
from tingxie.server.limits import duration_error
from tingxie.server.scheduler import Scheduler
from tingxie.server.work import Work

log = logging.getLogger("tingxie.server")


class _Stop(Exception):
    """The work ended (cancelled, failed) or the server is stopping: decode no further."""


def start_producer(work: Work, scheduler: Scheduler, transcriber: Transcriber,
                   max_duration_s: float | None) -> threading.Thread:
    thread = threading.Thread(target=produce, args=(work, scheduler, transcriber, max_duration_s),
                              name=f"tingxie-producer-{work.id[:12]}", daemon=True)
    thread.start()
    return thread


def produce(work: Work, scheduler: Scheduler, transcriber: Transcriber, max_duration_s: float | None) -> None:
    done_before = frozenset(work.finished)  # resumed: results already stored
    state = StreamState()
    chunks = _watched(decode_chunks(str(work.upload), CHUNK_S), work, scheduler, state, max_duration_s)
    try:
        segments = transcriber.segments(chunks, state, work.vad)
        if work.diarizer is not None:  # every segment, stored ones too: a resumed job hears the same voices
            segments = work.diarizer.observe(segments)
        for segment in segments:
            if segment.index in done_before:
                continue
            if not scheduler.offer(work, segment, state.audio_s):
                return
        if work.diarizer is not None:
            work.diarizer.speaker_timeline()  # clustered here, before the work can succeed, off the scheduler
        scheduler.produced_all(work, state.audio_s)
    except _Stop:
        return
    except AudioDecodeError as error:
        # The decoder names the file by its path on this server; the client knows its own name.
        reason = str(error).replace(str(work.upload), work.options.filename)
        scheduler.end(work, "failed", bad_request(reason, param="file", code="invalid_audio"))
    except ApiError as error:
        scheduler.end(work, "failed", error)
    except Exception as error:  # a bug must fail this work only, never the server
        log.exception("producer of %s failed", work.id)
        scheduler.end(work, "failed", ApiError(500, f"internal error while decoding ({type(error).__name__})"))
    finally:
        chunks.close()


def _watched(chunks: Iterable[np.ndarray], work: Work, scheduler: Scheduler, state: StreamState,
             max_duration_s: float | None) -> Iterator[np.ndarray]:
    """The decoded chunks, stopping when the work ends and failing past the duration limit."""
    decoded = 0
    try:
        for chunk in chunks:
            decoded += len(chunk)
            seconds = decoded / SAMPLE_RATE
            if max_duration_s is not None and seconds > max_duration_s:
                raise duration_error(seconds, max_duration_s, at_least=True)
            if not scheduler.progress(work, state.audio_s):
                raise _Stop
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close:
            close()
