"""The kinds of benchmark case, and how each one loads its model and transcribes once.

The parent only builds CaseSpecs (plain data, JSON round-trip); the heavy imports happen in
load(), which runs in the child process, so the parent stays small and never warms a model.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Callable

KINDS = ("tingxie", "fw-sequential", "fw-batched", "funasr")


@dataclass(frozen=True)
class CaseSpec:
    name: str  # the row label, unique within a benchmark
    kind: str  # one of KINDS
    audio: str
    model: str = "whisper-tiny.en"  # an embedded name or a CTranslate2 model directory
    compute_type: str = "int8"
    beam_size: int = 5
    batch_size: int = 16  # fw-batched: batch_size; tingxie: BatchOptions.max_batch_size (0: automatic)
    threads: int = 0  # 0: tingxie.memory.resources.usable_cpus()
    replicas: int = 0  # tingxie Whisper on CPU: ModelOptions.replicas (0: automatic)
    batch_size_s: float | None = None  # tingxie, funasr: FunASR's batch_size_s; None: tingxie's auto
    memory_budget: str | None = None  # tingxie auto: '1GiB', '50%' (None: its default)
    device: str = "cpu"
    timestamps: bool = True  # tingxie: word-aligned cues; False: one piece per window (as fw-batched)
    # tingxie: every model, decode and VAD option as the command line gave them (TranscribeOptions.to_dict);
    # the row's batching (batch_size_s, batch_size, memory_budget) is set over them. None: from the fields above.
    options: dict | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown case kind {self.kind!r}; use one of {', '.join(KINDS)}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> CaseSpec:
        return cls(**json.loads(text))


@dataclass
class CaseOutput:
    """What one transcription produced; extra holds kind-specific figures (batches, segments)."""

    text: str
    audio_s: float
    extra: dict = field(default_factory=dict)


Run = Callable[[], CaseOutput]


def load(spec: CaseSpec) -> Run:
    """Load the model (and VAD) for spec; return a function that transcribes spec.audio once."""
    if spec.kind == "funasr":
        from tingxie.benchmark.funasr_case import load_funasr

        return load_funasr(spec)
    return _tingxie(spec) if spec.kind == "tingxie" else _faster_whisper(spec)


def _threads(spec: CaseSpec) -> int:
    from tingxie.memory.resources import usable_cpus

    return spec.threads or usable_cpus()


def _tingxie(spec: CaseSpec) -> Run:
    from tingxie.options import BatchOptions, DecodeOptions, ModelOptions, TranscribeOptions
    from tingxie.engine.pipeline import Transcriber
    from tingxie.vad.detector import SpeechProbabilities

    if spec.options is not None:
        base = TranscribeOptions.from_dict(spec.options)
    else:
        base = TranscribeOptions(
            model=ModelOptions(name=spec.model, device=spec.device, compute_type=spec.compute_type,
                               threads=_threads(spec), replicas=spec.replicas),
            decode=DecodeOptions(beam_size=spec.beam_size, timestamps=spec.timestamps),
        )
    options = dataclasses.replace(base, batch=BatchOptions(
        batch_size_s=spec.batch_size_s, batch_threshold_s=base.batch.batch_threshold_s,
        max_batch_size=spec.batch_size or None, memory_budget=spec.memory_budget))
    transcriber = Transcriber(options)
    memory = transcriber.memory
    if memory is not None:
        memory.check_smallest_batch(transcriber.backend.shape)  # a budget too small fails here, not mid-run
    SpeechProbabilities()  # build the (cached) VAD session now: a load cost, not a run cost

    def run() -> CaseOutput:
        transcript = transcriber.transcribe(spec.audio)
        stats = transcript.stats
        return CaseOutput(transcript.text, stats.audio_seconds, {
            "batches": stats.batches, "segments": stats.segments, "oom_retries": stats.oom_retries,
            "padding_waste": stats.padding_waste,
            "budget_bytes": memory.total_budget_bytes if memory is not None else None,
        })

    return run


def _faster_whisper(spec: CaseSpec) -> Run:
    from faster_whisper import BatchedInferencePipeline, WhisperModel
    from faster_whisper.vad import get_vad_model

    from tingxie.models.registry import resolve_model

    model = WhisperModel(
        str(resolve_model(spec.model).path), device=spec.device, compute_type=spec.compute_type,
        cpu_threads=_threads(spec)
    )
    get_vad_model()  # cached by faster-whisper; built here so the run does not pay for it
    if spec.kind == "fw-batched":
        pipeline = BatchedInferencePipeline(model)  # VAD on by default

        def transcribe():
            return pipeline.transcribe(spec.audio, batch_size=spec.batch_size, beam_size=spec.beam_size)
    else:

        def transcribe():
            return model.transcribe(spec.audio, vad_filter=True, beam_size=spec.beam_size)

    def run() -> CaseOutput:
        segments, info = transcribe()
        texts = [segment.text.strip() for segment in segments]  # the generator does the work
        return CaseOutput(" ".join(t for t in texts if t), info.duration, {"segments": len(texts)})

    return run
