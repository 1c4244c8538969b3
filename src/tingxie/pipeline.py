"""One transcription, end to end: decode -> VAD -> plan batches -> execute -> transcript.

The Transcriber loads its backend and VAD once and can be reused for many inputs.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np

from . import SAMPLE_RATE
from .audio import decode_audio
from .backends.base import Backend
from .backends.registry import load_backend
from .batching import plan_for
from .executor import Executor
from .memory_planning import MemoryPlanner
from .options import TranscribeOptions
from .resources import peak_rss_bytes
from .segments import AudioSegment, RunStats, SpeechSpan, Transcript
from .vad import detect_speech

ProgressCallback = Callable[[float, float], None]  # (audio seconds done, audio seconds total)


class Transcriber:
    def __init__(self, options: TranscribeOptions | None = None, backend: Backend | None = None,
                 memory: MemoryPlanner | None = None):
        self.options = options or TranscribeOptions()
        self.backend = backend if backend is not None else load_backend(self.options.model, self.options.decode)
        # Budgeted batching needs the backend's measured memory model; FunASR mode does not.
        if memory is None and self.options.batch.batch_size_s is None and backend is None:
            memory = MemoryPlanner.profiled(self.backend, self.options)
        self.memory = memory
        # Segments must fit the model's input; for Whisper that is also the merge window.
        limit = min(self.options.vad.max_segment_s, self.backend.shape.max_item_s)
        self.vad_options = dataclasses.replace(
            self.options.vad, max_segment_s=limit, merge_max_s=min(self.options.vad.merge_max_s, limit)
        )

    def transcribe(self, source, *, progress: ProgressCallback | None = None) -> Transcript:
        started = time.perf_counter()
        audio = decode_audio(source)
        duration = len(audio) / SAMPLE_RATE
        spans = detect_speech(audio, self.vad_options)
        segments = cut_segments(audio, spans)
        executor = Executor(self.backend)
        results = {}
        done_s = 0.0
        by_index = {segment.index: segment for segment in segments}
        plan = plan_for(segments, self.backend.shape, self.options.batch,
                        memory_model=self.memory.model if self.memory else None,
                        working_budget_bytes=self.memory.working_budget() if self.memory else None)
        for planned in plan.batches:
            batch = [by_index[i] for i in planned.item_ids]
            for result in executor.run(batch):
                results[result.index] = result
            done_s += sum(item.duration for item in batch)
            if progress:
                progress(done_s, sum(s.duration for s in segments))
        pieces = [piece for index in sorted(results) for piece in results[index].pieces]
        languages = [results[i].language for i in sorted(results) if results[i].language]
        stats = RunStats(
            audio_seconds=duration,
            wall_seconds=time.perf_counter() - started,
            peak_rss_bytes=peak_rss_bytes(),
            batches=executor.batches_run,
            segments=len(segments),
            oom_retries=executor.oom_retries,
        )
        return Transcript(
            source=str(source) if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__") else "-",
            model=self.backend.name,
            language=_majority(languages),
            segments=pieces,
            stats=stats,
        )


def cut_segments(audio: np.ndarray, spans: list[SpeechSpan]) -> list[AudioSegment]:
    segments = []
    for index, span in enumerate(spans):
        first, last = int(span.start * SAMPLE_RATE), int(span.end * SAMPLE_RATE)
        segments.append(AudioSegment(index, span.start, span.end, audio[first:last]))
    return segments


def _majority(values: list[str]) -> str | None:
    return max(set(values), key=values.count) if values else None
