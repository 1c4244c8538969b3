"""The kinds of benchmark case, and how each one loads its model and transcribes once.

The parent only builds CaseSpecs (plain data, JSON round-trip); the heavy imports happen in
load(), which runs in the child process, so the parent stays small and never warms a model.
"""

from __future__ import annotations

import dataclasses

from tingxie.benchmark.spec import CaseOutput, CaseSpec, Run


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
    transcribe = _given_spans(spec, transcriber) if spec.given_spans else lambda: transcriber.transcribe(spec.audio)

    def run() -> CaseOutput:
        transcript = transcribe()
        stats = transcript.stats
        return CaseOutput(transcript.text, stats.audio_seconds, {
            "batches": stats.batches, "segments": stats.segments, "oom_retries": stats.oom_retries,
            "padding_waste": stats.padding_waste,
            "budget_bytes": memory.total_budget_bytes if memory is not None else None,
        })

    return run


def _given_spans(spec: CaseSpec, transcriber):
    """Transcribe Silero's spans of spec.audio, found now (at load), as the funasr kind gets them."""
    from tingxie import SAMPLE_RATE
    from tingxie.audio.decode import decode_audio
    from tingxie.benchmark.spans import segments_from_spans, speech_spans_ms

    audio = decode_audio(spec.audio)
    segments = segments_from_spans(audio, speech_spans_ms(audio))
    return lambda: transcriber.transcribe_segments(segments, total_s=len(audio) / SAMPLE_RATE)


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
