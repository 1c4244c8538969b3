"""Where one tingxie transcription spends its time: decode, VAD, features, encode, generate.

    python -m tingxie.benchmark.stages AUDIO [--model whisper-tiny.en] [--beam-size 5]
                                             [--max-batch-size 16] [--faster-whisper]

Runs in this process, once, after loading: the pipeline's stage functions and the backend's
feature extractor and CTranslate2 calls are wrapped with timers (patched on this Transcriber
only). --faster-whisper also times faster-whisper's own decode and VAD on the same file and
counts the 30 s windows its batched pipeline would encode, for comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict

PIPELINE_STAGES = ("decode_audio", "detect_speech", "cut_segments", "plan_for")


class Timers:
    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.items: dict[str, int] = defaultdict(int)

    def wrap(self, name: str, function, count_items=None):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started
                self.calls[name] += 1
                if count_items:
                    self.items[name] += count_items(*args, **kwargs)

        return timed


class _TimedModel:
    """Forwards to a CTranslate2 Whisper model, timing encode, detect_language and generate."""

    def __init__(self, model, timers: Timers):
        self._model = model
        self.encode = timers.wrap("encode", model.encode, lambda features, **_: features.shape[0])
        self.generate = timers.wrap("generate", model.generate, lambda _encoded, prompts, **__: len(prompts))
        self.detect_language = timers.wrap("detect_language", model.detect_language)

    def __getattr__(self, name):
        return getattr(self._model, name)


def profile_tingxie(audio: str, model: str, beam_size: int, max_batch_size: int) -> dict:
    from .. import pipeline
    from ..options import BatchOptions, DecodeOptions, ModelOptions, TranscribeOptions
    from ..vad import SpeechProbabilities

    started = time.perf_counter()
    transcriber = pipeline.Transcriber(TranscribeOptions(
        model=ModelOptions(name=model, device="cpu", compute_type="int8"),
        decode=DecodeOptions(beam_size=beam_size),
        batch=BatchOptions(max_batch_size=max_batch_size),
    ))
    SpeechProbabilities()
    load_s = time.perf_counter() - started

    timers = Timers()
    backend = transcriber.backend
    backend._log_mel = timers.wrap("features", backend._log_mel)
    backend._pieces = timers.wrap("detokenize", backend._pieces)
    backend._model = _TimedModel(backend._model, timers)
    originals = {name: getattr(pipeline, name) for name in PIPELINE_STAGES if hasattr(pipeline, name)}
    try:
        for name, function in originals.items():
            setattr(pipeline, name, timers.wrap(name, function))
        transcript = transcriber.transcribe(audio)
    finally:
        for name, function in originals.items():
            setattr(pipeline, name, function)
    wall = transcript.stats.wall_seconds
    split = dict(timers.seconds)
    split["other"] = wall - sum(split.values())
    return {
        "load_s": load_s,
        "wall_s": wall,
        "audio_s": transcript.stats.audio_seconds,
        "segments": transcript.stats.segments,
        "batches": transcript.stats.batches,
        "windows_encoded": timers.items["encode"],  # segments plus re-decoded tails
        "seconds": split,
        "calls": dict(timers.calls),
    }


def profile_faster_whisper(audio: str) -> dict:
    """faster-whisper's decode and VAD (as its batched pipeline calls it) on the same file."""
    from faster_whisper.audio import decode_audio
    from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps, get_vad_model

    get_vad_model()
    started = time.perf_counter()
    samples = decode_audio(audio)
    decoded = time.perf_counter()
    spans = get_speech_timestamps(samples, VadOptions(max_speech_duration_s=30, min_silence_duration_ms=160))
    vad_done = time.perf_counter()
    chunks, _ = collect_chunks(samples, spans, max_duration=30)
    return {
        "decode_s": decoded - started,
        "vad_s": vad_done - decoded,
        "speech_spans": len(spans),
        "batched_windows": len(chunks),
    }


def markdown(profile: dict) -> str:
    wall = profile["wall_s"]
    lines = ["| stage | seconds | share of wall | calls |", "|---|---|---|---|"]
    for name, seconds in sorted(profile["seconds"].items(), key=lambda kv: -kv[1]):
        calls = profile["calls"].get(name, "")
        lines.append(f"| {name} | {seconds:.2f} | {100 * seconds / wall:.1f}% | {calls} |")
    lines.append(f"| **total wall** | {wall:.2f} | 100% | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio")
    parser.add_argument("--model", default="whisper-tiny.en")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--faster-whisper", action="store_true", help="also time faster-whisper's decode and VAD")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    profile = profile_tingxie(args.audio, args.model, args.beam_size, args.max_batch_size)
    if args.faster_whisper:
        profile["faster_whisper"] = profile_faster_whisper(args.audio)
    print(markdown(profile))
    print(json.dumps({k: v for k, v in profile.items() if k not in ("seconds", "calls")}, indent=1))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(profile, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
