"""One thread per request or job: decode + VAD, feeding segments to the scheduler.

The scheduler's offer() blocks while the work already holds its share of decoded segments,
so a long upload is decoded only as fast as it is transcribed. A resumed job decodes again
from the start (the VAD is deterministic, so indices match) and skips the segments whose
results are already stored.
"""

from __future__ import annotations

import logging
import threading
from typing import Iterable, Iterator

import numpy as np

from .. import SAMPLE_RATE
from ..audio import decode_chunks
from ..errors import AudioDecodeError
from ..pipeline import CHUNK_S, Transcriber
from ..segments import AudioSegment
from ..streaming import StreamState, speech_segments
from ..vad import SpeechDetector
from .api_errors import ApiError, bad_request
from .limits import duration_error
from .scheduler import Scheduler
from .work import Work

log = logging.getLogger("tingxie.server")


class _Stop(Exception):
    """The work ended (cancelled, failed) or the server is stopping: decode no further."""


def start_producer(work: Work, scheduler: Scheduler, transcriber: Transcriber,
                   max_duration_s: float | None) -> threading.Thread:
    thread = threading.Thread(target=produce, args=(work, scheduler, transcriber, max_duration_s),
                              name=f"tingxie-producer-{work.id[:12]}", daemon=True)
    thread.start()
    return thread


def segment_stream(transcriber: Transcriber, chunks: Iterable[np.ndarray], state: StreamState) -> Iterator[AudioSegment]:
    """The segments Transcriber.transcribe would cut from these chunks, in the same order with
    the same indices, so the server's results equal the CLI's and a resumed job's indices match."""
    segments = speech_segments(chunks, SpeechDetector(transcriber.vad_options), state)
    if getattr(transcriber, "packs_windows", False):  # fixed windows packed with speech (packing.py)
        from ..packing import pack_windows

        segments = pack_windows(segments, transcriber.backend.shape.max_item_s)
    return segments


def produce(work: Work, scheduler: Scheduler, transcriber: Transcriber, max_duration_s: float | None) -> None:
    done_before = frozenset(work.finished)  # resumed: results already stored
    state = StreamState()
    chunks = _watched(decode_chunks(str(work.upload), CHUNK_S), work, scheduler, state, max_duration_s)
    try:
        for segment in segment_stream(transcriber, chunks, state):
            if segment.index in done_before:
                continue
            if not scheduler.offer(work, segment, state.audio_s):
                return
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
