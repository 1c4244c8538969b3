"""One transcription, end to end: decode -> VAD -> segments -> windows of batches -> transcript.

The Transcriber loads its backend (and profiles its memory) once and serves many inputs. Audio
streams through (see streaming.py), so memory does not grow with the length of the input.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from typing import Callable, Iterable

from tingxie.audio.decode import decode_chunks, probe_duration
from tingxie.backends.base import Backend
from tingxie.backends.registry import load_backend
from tingxie.engine.executor import Executor
from tingxie.memory.planning import BudgetTrace, MemoryPlanner
from tingxie.options import TranscribeOptions, VadOptions
from tingxie.engine.packing import pack_windows
from tingxie.engine.prefetch import prefetched
from tingxie.planner.shapes import ShapeRule
from tingxie.memory.resources import peak_rss_bytes
from tingxie.segments import AudioSegment, RunStats, SegmentResult, TextSegment, Transcript, majority_language
from tingxie.engine.streaming import StreamState, WindowDone, run_windows, speech_segments
from tingxie.vad.detector import SpeechDetector
from tingxie.vad.silero import SpeechProbabilities

log = logging.getLogger(__name__)
ProgressCallback = Callable[[float, "float | None"], None]  # (audio seconds done, total or None)
CHUNK_S = 30.0
PREFETCH_DEPTH = 4  # segments (packed windows: ~2 MB each) made ahead of the model


def _describe(model) -> str:
    return f"{model.replicas} replica{'s' if model.replicas != 1 else ''}" if model.replicas else "automatic"


class Transcriber:
    def __init__(self, options: TranscribeOptions | None = None, backend: Backend | None = None,
                 memory: MemoryPlanner | None = None):
        options = options or TranscribeOptions()
        # As given, before the automatic batch cap and any leaner execution: the options a server
        # loads its other models with (each resolves its own cap and execution)
        self.requested_options = options
        self.backend = backend if backend is not None else load_backend(options.model, options.decode,
                                                                         options.batch.memory_budget)
        # The automatic batch cap depends on the device the backend runs on.
        batch = dataclasses.replace(options.batch, max_batch_size=options.batch.resolved_max_batch(
            self.backend.device))
        self.options = dataclasses.replace(options, batch=batch)
        if self.options.diarize.enabled:
            # The speaker encoder is read now: a missing one fails before any input, and its
            # weights (~6 MB) are resident, so counted, when the memory budget is planned.
            from tingxie.diarize.stage import load_encoder

            load_encoder(self.options.diarize.speaker_model)
        # Budgeted batching needs the backend's measured memory model; FunASR mode does not.
        if memory is None and self.options.batch.batch_size_s is None and backend is None:
            memory = self._fit_execution()
        self.memory = memory
        # Segments must fit the model's input. Fixed windows are packed with speech after the
        # VAD (packing.py), so the VAD itself does not merge neighbours for them.
        limit = min(self.options.vad.max_segment_s, self.backend.shape.max_item_s)
        self.packs_windows = self.backend.shape.rule is ShapeRule.FIXED_WINDOW
        self.vad_options = dataclasses.replace(
            self.options.vad, max_segment_s=limit,
            merge_max_s=0.0 if self.packs_windows else min(self.options.vad.merge_max_s, limit),
        )

    def _fit_execution(self) -> MemoryPlanner | None:
        """The measured memory model of the fastest execution whose smallest batch fits the
        budget: the backend as loaded, else its leaner options (fewer replicas, ...) one after
        another, each loaded and measured. A budget between the leanest and the default runs,
        slower; one below even the leanest fails here, naming the smallest budget that works,
        where every item costs the same (fixed windows); variable-length items are planned per
        window, as a shorter one may still fit."""
        while True:
            if self.backend.speech_detector() is None:
                SpeechProbabilities()  # Silero's session loaded now: part of what is resident while batches run
            memory = MemoryPlanner.profiled(self.backend, self.options)
            shape = self.backend.shape
            if memory is None or memory.fits_smallest_batch(shape):
                return memory
            leaner = self.backend.leaner_options()
            if leaner is None:
                if shape.rule is ShapeRule.FIXED_WINDOW:
                    memory.check_smallest_batch(shape)  # raises, naming the numbers
                return memory
            log.warning("the memory budget is below what %s needs; running it leaner (%s), slower",
                        self.backend.execution or "this execution", _describe(leaner))
            self.backend = None  # the old execution's memory goes before the leaner one loads
            gc.collect()
            self.options = dataclasses.replace(self.options, model=leaner)
            self.backend = load_backend(leaner, self.options.decode, self.options.batch.memory_budget)

    def segments(self, chunks, state: StreamState, vad: VadOptions | None = None):
        """The recognition items cut from audio chunks, in time order with stable indices (the
        server uses this too, so its results and resumed indices match the CLI's). vad: a
        request's own speech detection settings (the server's chunking_strategy); None: the
        Transcriber's."""
        detector = self._speech_detector(vad)
        segments = speech_segments(chunks, detector, state)
        if self.packs_windows:
            segments = pack_windows(segments, self.backend.shape.max_item_s)
        return segments

    def _speech_detector(self, vad: VadOptions | None = None):
        # A backend may bring the VAD its users expect (Paraformer: FunASR's FSMN-VAD on request).
        detector = self.backend.speech_detector()
        return detector if detector is not None else SpeechDetector(vad or self.vad_options)

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
        # Decoding and VAD run a few segments ahead in a thread, overlapping the model's compute;
        # with --diarize, so do the voice vectors of each segment (resumed segments included).
        segments = self.segments(decode_chunks(source, CHUNK_S), state)
        diarizer = self._diarizer()
        if diarizer is not None:
            segments = diarizer.observe(segments)
        segments = prefetched(segments, depth=PREFETCH_DEPTH)
        transcript = self.transcribe_segments(segments, state=state, total_s=total_s, progress=progress,
                                              on_window=on_window, recorded=recorded, started=started)
        if diarizer is not None:
            diarizer.label_transcript(transcript)
        transcript.source = source if isinstance(source, str) else getattr(source, "name", "-")
        return transcript

    def transcribe_segments(
        self,
        segments: Iterable[AudioSegment],
        *,
        state: StreamState | None = None,
        total_s: float | None = None,
        progress: ProgressCallback | None = None,
        on_window: Callable[[WindowDone], None] | None = None,
        recorded: Callable[[int], SegmentResult | None] = lambda index: None,
        started: float | None = None,
    ) -> Transcript:
        """The stream from speech segments on: windows of planned batches, then the text stage."""
        started = time.perf_counter() if started is None else started
        state = state or StreamState()
        executor = Executor(self.backend, after_batch=self.memory.after_batch if self.memory else None)
        if self.memory:
            self.memory.trace = BudgetTrace()  # this run's figures
        text = self._text_stream()
        results: list[SegmentResult] = []
        pieces: list[TextSegment] = []
        last = None
        if progress:
            progress(0.0, total_s)
        for window in run_windows(segments, self.backend, executor, self.options.batch,
                                  memory_model=self.memory.model if self.memory else None,
                                  working_budget=self.memory.working_budget if self.memory else None,
                                  recorded=recorded):
            # Results (and checkpoints) keep the backend's pieces; the text stage makes the output:
            # the whole recording's punctuation, or each segment's own (Paraformer's word pieces).
            if text is not None:
                window = dataclasses.replace(window, pieces=tuple(text.push(window.results)))
            else:
                window = dataclasses.replace(window, pieces=tuple(
                    piece for result in window.results for piece in self.backend.segment_text(result).pieces))
            results.extend(window.results)
            pieces.extend(window.output)
            last = window
            if on_window:
                on_window(window)
            if progress:
                progress(window.audio_done_s, total_s)
        if text is not None:
            tail = WindowDone(last.number + 1 if last else 0, (), last.audio_done_s if last else 0.0,
                              tuple(text.finish()))
            pieces.extend(tail.pieces)
            if on_window and tail.pieces:
                on_window(tail)
        audio_s = state.audio_s or total_s or 0.0  # given segments (no decoding): the caller's total
        if progress:
            progress(audio_s, total_s or audio_s)
        stats = RunStats(
            audio_seconds=audio_s,
            wall_seconds=time.perf_counter() - started,
            peak_rss_bytes=peak_rss_bytes(),
            batches=executor.batches_run,
            segments=len(results),  # recognition items: packed windows for Whisper
            oom_retries=executor.oom_retries,
            padding_waste=executor.padding.waste,
            budget_shrinks=self.memory.trace.shrinks if self.memory else 0,
            lowest_batch_memory_bytes=self.memory.trace.lowest if self.memory else None,
        )
        return Transcript(
            source="-",
            model=self.backend.name,
            language=majority_language(results),
            segments=pieces,
            stats=stats,
            words=[word for result in results for word in result.words],
        )

    def _diarizer(self):
        """A fresh diarization stage for one input (the encoder is loaded once), or None."""
        if not self.options.diarize.enabled:
            return None
        from tingxie.diarize.stage import Diarizer, load_encoder

        return Diarizer(load_encoder(self.options.diarize.speaker_model), self.options.diarize)

    def _text_stream(self):
        """Paraformer: punctuation over the whole recording's text (as FunASR's AutoModel does),
        streamed; a fresh stream for this input, or None where the backend has none."""
        return self.backend.text_stream()
