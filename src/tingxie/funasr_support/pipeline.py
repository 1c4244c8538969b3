"""The FunASR-style pipeline for one recording, as AutoModel(vad_model=..., punc_model=...) runs it.

VAD (Silero, or FSMN-VAD) -> segments -> the planner's batches on the Paraformer backend (with
the executor's out-of-memory split and retry) -> punctuation over the text of the whole recording
-> sentences with times. tingxie's streaming Transcriber punctuates each speech segment on its
own instead (a backend sees one batch at a time); this module is the whole-recording variant,
used where the text of the whole recording is wanted at once (and by bench/bench_paraformer.py).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .. import SAMPLE_RATE
from ..batching import plan_for
from ..executor import Executor
from ..options import BatchOptions, VadOptions
from ..resources import peak_rss_bytes
from ..segments import AudioSegment, RunStats, SpeechSpan, TextSegment, join_texts
from .options import SILERO
from .punctuation import Word

CPU_MAX_BATCH = 4


@dataclass
class PipelineResult:
    sentences: list[TextSegment]
    words: list[Word]
    tokens: dict[int, tuple[int, ...]]  # segment index -> token ids
    segments: list[AudioSegment] = field(default_factory=list)
    stats: RunStats = field(default_factory=RunStats)

    @property
    def text(self) -> str:
        return join_texts(s.text for s in self.sentences)


class ParaformerPipeline:
    def __init__(self, backend, *, vad_options: VadOptions | None = None, batch: BatchOptions | None = None,
                 memory=None):
        from ..paraformer_models import resolve_funasr_model

        self.backend = backend
        # On a CPU a batch of 4 already amortises the per-op and BLSTM costs; larger ones gain
        # little speed and hold more activations (measured with bench/bench_paraformer.py).
        self.batch = batch or BatchOptions(max_batch_size=CPU_MAX_BATCH if backend.device == "cpu" else 16)
        self.memory = memory  # a MemoryPlanner, or None (unmeasured: only max_batch_size bounds batches)
        vad = vad_options or VadOptions()
        limit = min(vad.max_segment_s, backend.shape.max_item_s)
        self.vad_options = dataclasses.replace(vad, max_segment_s=limit, merge_max_s=min(vad.merge_max_s, limit))
        choice = backend.options.vad_model
        self.fsmn = None
        if choice != SILERO:
            from .fsmn_vad import FsmnVad

            self.fsmn = FsmnVad(resolve_funasr_model(choice, "VAD model"), backend.device, limit)

    def speech(self, audio: np.ndarray) -> list[SpeechSpan]:
        if self.fsmn is not None:
            return self.fsmn.detect(audio)
        from ..vad import detect_speech

        return detect_speech(audio, self.vad_options)

    def run(self, audio: np.ndarray, spans: Sequence[SpeechSpan] | None = None) -> PipelineResult:
        started = time.perf_counter()
        spans = self.speech(audio) if spans is None else list(spans)
        segments = [AudioSegment(i, s.start, s.end, audio[int(s.start * SAMPLE_RATE): int(s.end * SAMPLE_RATE)])
                    for i, s in enumerate(spans)]
        by_index = {s.index: s for s in segments}
        plan = plan_for(segments, self.backend.shape, self.batch,
                        memory_model=self.memory.model if self.memory else None,
                        working_budget_bytes=self.memory.working_budget() if self.memory else None)
        executor = Executor(self.backend)
        results = {}
        word_pieces, self.backend.word_pieces = self.backend.word_pieces, True
        try:
            for planned in plan.batches:
                for result in executor.run([by_index[i] for i in planned.item_ids]):
                    results[result.index] = result
        finally:
            self.backend.word_pieces = word_pieces
        ordered = [results[s.index] for s in segments]
        words = [Word(p.text, p.start, p.end) for r in ordered for p in r.pieces]
        sentences = None
        if self.backend.punctuator is not None and self.backend._decode.timestamps:
            sentences = self.backend.punctuator.sentences(words)
        if sentences is None:  # one piece per speech segment, as FunASR without punctuation
            sentences = [TextSegment(r.pieces[0].start, r.pieces[-1].end, join_texts(p.text for p in r.pieces))
                         for r in ordered if r.pieces]
        stats = RunStats(audio_seconds=len(audio) / SAMPLE_RATE, wall_seconds=time.perf_counter() - started,
                         peak_rss_bytes=peak_rss_bytes(), batches=executor.batches_run, segments=len(segments),
                         oom_retries=executor.oom_retries, padding_waste=executor.padding.waste)
        return PipelineResult(sentences, words, {r.index: r.tokens for r in ordered}, segments, stats)
