"""Where one transcription spends its time: decode, VAD, features, encode, generate.

    python -m tingxie.benchmark.stages AUDIO [--model whisper-tiny.en] [--beam-size 5]
                                             [--max-batch-size 16] [--faster-whisper N]
                                             [--cpu] [--threads N]

Runs in this process, once, after loading (PYTHONPATH chooses which tingxie source runs). tingxie: the audio decoder, the VAD, the backend's
feature extractor and its CTranslate2 calls are wrapped with timers; what is left is "other"
(segment cutting, planning, glue). --faster-whisper N then splits faster-whisper's
BatchedInferencePipeline (batch N) the same way, for a side-by-side comparison.

--cpu counts CPU seconds instead of wall seconds, which a shared machine's load barely moves:
a Python-side stage (decode, VAD, features) by its own thread's CPU clock, a CTranslate2 call by
the CPU its native worker threads spent meanwhile (calls must not overlap: use --threads 1, one
replica); "other" is the rest of the process's CPU. --threads 1 gives each pipeline's serial work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import os
import threading
import time
from collections import defaultdict

from tingxie import SAMPLE_RATE


_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def native_threads_cpu_s() -> float:
    """CPU seconds of this process's threads that Python did not start (CTranslate2's and ONNX
    Runtime's workers), from /proc (Linux)."""
    python_threads = {thread.native_id for thread in threading.enumerate()}
    total = 0
    for task in os.listdir("/proc/self/task"):
        if int(task) in python_threads:
            continue
        try:
            with open(f"/proc/self/task/{task}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total * _TICK_S


class Timers:
    def __init__(self, cpu: bool = False):
        # wall clock, or (cpu) the calling thread's CPU clock, and the native workers' CPU for model calls
        self.clock = time.thread_time if cpu else time.perf_counter
        self.native_clock = native_threads_cpu_s if cpu else time.perf_counter
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.items: dict[str, float] = defaultdict(float)  # what count_items adds up per stage

    def wrap(self, name: str, function, count_items=None, native: bool = False):
        clock = self.native_clock if native else self.clock

        def timed(*args, **kwargs):
            started = clock()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += clock() - started
                self.calls[name] += 1
                if count_items:
                    self.items[name] += count_items(*args, **kwargs)

        return timed

    def wrap_generator(self, name: str, function):
        """Time a generator function: the time spent producing each item."""

        def timed(*args, **kwargs):
            iterator = iter(function(*args, **kwargs))
            while True:
                started = self.clock()
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                finally:
                    self.seconds[name] += self.clock() - started
                self.calls[name] += 1
                yield item

        return timed

    def split(self, wall_s: float) -> dict:
        seconds = dict(self.seconds)
        seconds["other"] = wall_s - sum(seconds.values())
        return {"wall_s": wall_s, "seconds": seconds, "calls": dict(self.calls)}


class _TimedWhisper:
    """Forwards to a CTranslate2 Whisper model, timing encode, detect_language and generate."""

    def __init__(self, model, timers: Timers):
        self._model = model
        self.encode = timers.wrap("encode", model.encode, lambda features, *_, **__: features.shape[0], native=True)
        self.generate = timers.wrap("generate", model.generate, lambda _encoded, prompts, *_, **__: len(prompts),
                                    native=True)
        self.detect_language = timers.wrap("detect_language", model.detect_language, native=True)
        self.align = timers.wrap("align", model.align, native=True)  # word timing, where a backend uses it

    def __getattr__(self, name):
        return getattr(self._model, name)


class _TimedCallable:
    """Forwards attributes to an object, timing calls of the object itself."""

    def __init__(self, target, timed_call):
        self._target, self._call = target, timed_call

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._target, name)


@contextlib.contextmanager
def _patched(owner, name: str, replacement):
    original = getattr(owner, name)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


def profile_tingxie(audio: str, model: str, beam_size: int, max_batch_size: int, cpu: bool = False,
                    threads: int = 0) -> dict:
    from tingxie.engine import pipeline
    from tingxie.vad import detector as vad
    from tingxie.options import BatchOptions, DecodeOptions, ModelOptions, TranscribeOptions

    started = time.perf_counter()
    transcriber = pipeline.Transcriber(TranscribeOptions(
        model=ModelOptions(name=model, device="cpu", compute_type="int8", threads=threads),
        decode=DecodeOptions(beam_size=beam_size),
        batch=BatchOptions(max_batch_size=max_batch_size),
    ))
    vad.SpeechProbabilities()
    load_s = time.perf_counter() - started

    timers = Timers(cpu)
    backend = transcriber.backend
    window_s = backend.shape.max_item_s
    # features' items: audio seconds really in the windows (the rest of each window is padding)
    backend._log_mel = timers.wrap("features", backend._log_mel,
                                   lambda samples: min(len(samples) / SAMPLE_RATE, window_s))
    backend._model = _TimedWhisper(backend._model, timers)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_patched(pipeline, "decode_chunks", timers.wrap_generator("decode", pipeline.decode_chunks)))
        for method in ("push", "finish"):
            stack.enter_context(_patched(vad.SpeechDetector, method,
                                         timers.wrap("vad", getattr(vad.SpeechDetector, method))))
        cpu_started = time.process_time()
        transcript = transcriber.transcribe(audio)
        cpu_s = time.process_time() - cpu_started
    windows = int(timers.items["encode"])
    return {
        "load_s": load_s,
        "audio_s": transcript.stats.audio_seconds,
        "segments": transcript.stats.segments,
        "batches": transcript.stats.batches,
        "windows_encoded": windows,  # 30 s encoder inputs, re-decoded remainders included
        "window_fill": timers.items["features"] / (window_s * max(1, windows)),
        "text": transcript.text,
        **timers.split(cpu_s if cpu else transcript.stats.wall_seconds),
    }


def profile_faster_whisper(audio: str, model: str, beam_size: int, batch_size: int, cpu: bool = False,
                           threads: int = 0) -> dict:
    """faster-whisper's BatchedInferencePipeline split the same way, on the same file."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel
    from faster_whisper import transcribe as fw
    from faster_whisper.vad import get_vad_model

    from tingxie.models.registry import resolve_model
    from tingxie.memory.resources import usable_cpus

    whisper = WhisperModel(str(resolve_model(model).path), device="cpu", compute_type="int8",
                           cpu_threads=threads or usable_cpus())
    get_vad_model()
    timers = Timers(cpu)
    whisper.model = _TimedWhisper(whisper.model, timers)
    extractor = whisper.feature_extractor
    whisper.feature_extractor = _TimedCallable(extractor, timers.wrap(
        "features", extractor, lambda samples, *_, **__: min(len(samples) / SAMPLE_RATE, 30.0)))
    batched = BatchedInferencePipeline(whisper)
    with _patched(fw, "decode_audio", timers.wrap("decode", fw.decode_audio)), \
            _patched(fw, "get_speech_timestamps", timers.wrap("vad", fw.get_speech_timestamps)):
        started = time.process_time() if cpu else time.perf_counter()
        segments, info = batched.transcribe(audio, batch_size=batch_size, beam_size=beam_size)
        text = " ".join(segment.text.strip() for segment in segments)
        wall_s = (time.process_time() if cpu else time.perf_counter()) - started
    windows = int(timers.items["encode"])
    return {
        "batch_size": batch_size,
        "audio_s": info.duration,
        "windows_encoded": windows,
        "window_fill": timers.items["features"] / (30.0 * max(1, windows)),
        "text": text,
        **timers.split(wall_s),
    }


def markdown(profiles: dict[str, dict]) -> str:
    """One column per profiled pipeline: seconds (share of its wall) per stage."""
    names = list(profiles)
    stages = sorted({s for p in profiles.values() for s in p["seconds"]},
                    key=lambda s: -max(p["seconds"].get(s, 0.0) for p in profiles.values()))
    lines = ["| stage | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for stage in stages:
        cells = []
        for profile in profiles.values():
            seconds = profile["seconds"].get(stage)
            cells.append("—" if seconds is None else f"{seconds:.2f} s ({100 * seconds / profile['wall_s']:.0f}%)")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"{p['wall_s']:.2f} s" for p in profiles.values()) + " |")
    lines.append("| windows encoded | " + " | ".join(str(p["windows_encoded"]) for p in profiles.values()) + " |")
    lines.append("| audio in a window | " + " | ".join(f"{100 * p['window_fill']:.0f}%" for p in profiles.values()) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio")
    parser.add_argument("--model", default="whisper-tiny.en")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--faster-whisper", type=int, metavar="N", help="also split BatchedInferencePipeline, batch N")
    parser.add_argument("--json", help="also write the figures (texts included) to this file")
    parser.add_argument("--cpu", action="store_true", help="CPU seconds per stage instead of wall seconds")
    parser.add_argument("--threads", type=int, default=0, help="threads for both (0: the usable CPUs)")
    args = parser.parse_args(argv)
    profiles = {"tingxie": profile_tingxie(args.audio, args.model, args.beam_size, args.max_batch_size,
                                           args.cpu, args.threads)}
    if args.faster_whisper:
        profiles[f"fw-batched-{args.faster_whisper}"] = profile_faster_whisper(
            args.audio, args.model, args.beam_size, args.faster_whisper, args.cpu, args.threads)
    print(markdown(profiles))
    for name, profile in profiles.items():
        print(name, json.dumps({k: v for k, v in profile.items() if k not in ("seconds", "calls", "text")}))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(profiles, out, indent=1, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
