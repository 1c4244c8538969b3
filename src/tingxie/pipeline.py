"""One transcription, end to end: decode -> VAD -> segments -> windows of batches -> transcript.

The Transcriber loads its backend (and profiles its memory) once and serves many inputs. Audio
streams through (see streaming.py), so memory does not grow with the length of the input.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

from .audio import decode_chunks, probe_duration
from .backends.base import Backend
from .backends.registry import load_backend
from .executor import Executor
from .memory_planning import MemoryPlanner
from .options import TranscribeOptions
from .packing import pack_windows
from .prefetch import prefetched
from .shapes import ShapeRule
from .resources import peak_rss_bytes
from .segments import RunStats, SegmentResult, Transcript
from .streaming import StreamState, WindowDone, run_windows, speech_segments
from .vad import SpeechDetector

ProgressCallback = Callable[[float, "float | None"], None]  # (audio seconds done, total or None)
CHUNK_S = 30.0
PREFETCH_DEPTH = 4  # segments (packed windows: ~2 MB each) made ahead of the model


class Transcriber:
    def __init__(self, options: TranscribeOptions | None = None, backend: Backend | None = None,
                 memory: MemoryPlanner | None = None):
        options = options or TranscribeOptions()
        self.backend = backend if backend is not None else load_backend(options.model, options.decode)
        # The automatic batch cap depends on the device the backend runs on.
        batch = dataclasses.replace(options.batch, max_batch_size=options.batch.resolved_max_batch(
            getattr(self.backend, "device", "cpu")))
        self.options = dataclasses.replace(options, batch=batch)
        # Budgeted batching needs the backend's measured memory model; FunASR mode does not.
        if memory is None and self.options.batch.batch_size_s is None and backend is None:
            memory = MemoryPlanner.profiled(self.backend, self.options)
        self.memory = memory
        # Segments must fit the model's input. Fixed windows are packed with speech after the
        # VAD (packing.py), so the VAD itself does not merge neighbours for them.
        limit = min(self.options.vad.max_segment_s, self.backend.shape.max_item_s)
        self.packs_windows = self.backend.shape.rule is ShapeRule.FIXED_WINDOW
        self.vad_options = dataclasses.replace(
            self.options.vad, max_segment_s=limit,
            merge_max_s=0.0 if self.packs_windows else min(self.options.vad.merge_max_s, limit),
        )

    def segments(self, chunks, state: StreamState):
        """The recognition items cut from audio chunks, in time order with stable indices (the
        server uses this too, so its results and resumed indices match the CLI's)."""
        segments = speech_segments(chunks, SpeechDetector(self.vad_options), state)
        if self.packs_windows:
            segments = pack_windows(segments, self.backend.shape.max_item_s)
        return segments

    def transcribe(
        self,
        source,
        *,
        progress: ProgressCallback | None = None,
        on_window: Callable[[WindowDone], None] | None = None,
        recorded: Callable[[int], SegmentResult | None] = lambda index: None,
    ) -> Transcript:
        """Transcribe one input. on_window sees each finished window in time order (incremental
        output, checkpoints); recorded(i) returns segment i's result from an earlier run, if any."""
        started = time.perf_counter()
        total_s = probe_duration(source)
        state = StreamState()
        executor = Executor(self.backend, after_batch=self.memory.after_batch if self.memory else None)
        # Decoding and VAD run a window ahead in a thread, overlapping the model's compute.
        segments = prefetched(self.segments(decode_chunks(source, CHUNK_S), state), depth=PREFETCH_DEPTH)
        results: list[SegmentResult] = []
        if progress:
            progress(0.0, total_s)
        for window in run_windows(segments, self.backend, executor, self.options.batch,
                                  memory_model=self.memory.model if self.memory else None,
                                  working_budget=self.memory.working_budget if self.memory else None,
                                  recorded=recorded):
            results.extend(window.results)
            if on_window:
                on_window(window)
            if progress:
                progress(window.audio_done_s, total_s)
        if progress:
            progress(state.audio_s, total_s or state.audio_s)
        languages = [r.language for r in results if r.language]
        stats = RunStats(
            audio_seconds=state.audio_s,
            wall_seconds=time.perf_counter() - started,
            peak_rss_bytes=peak_rss_bytes(),
            batches=executor.batches_run,
            segments=len(results),  # recognition items: packed windows for Whisper
            oom_retries=executor.oom_retries,
            padding_waste=executor.padding.waste,
        )
        return Transcript(
            source=source if isinstance(source, str) else getattr(source, "name", "-"),
            model=self.backend.name,
            language=max(set(languages), key=languages.count) if languages else None,
            segments=[piece for result in results for piece in result.pieces],
            stats=stats,
        )
