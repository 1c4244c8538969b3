"""Where one tingxie Paraformer run spends its time, stage by stage, and its peak RSS.

    .venv/bin/python bench/paraformer_stages.py --compute-type float32 --engine auto [--memory-budget 1.8GiB]

Uses bench_paraformer.py's work folder (the random Paraformer-large, the exported ONNX graphs
and the memory profile cache: run that benchmark once first); the segments are Silero's spans.
One process: the backend is loaded, the cached memory profile read, and the recording's segments
run through Transcriber.transcribe_segments with timers around the backend's stages. Stages run
in worker threads (items side by side) add their threads' time, so they can sum past the wall
time; the wall times are `recognise`, `encode_items` and the total. CPU seconds are the whole
process's (every thread's, ONNX Runtime's and torch's workers' too) during each stage: stages
run side by side count each other's CPU too.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("TMPDIR", "/tmp")) / "tingxie-bench-paraformer"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio", type=Path, default=ROOT.parent / "shared" / "audio" / "long" / "zh_long.flac")
    p.add_argument("--work", type=Path, default=WORK)
    p.add_argument("--compute-type", default="float32")
    p.add_argument("--engine", default="auto", choices=("auto", "onnx", "torch"))
    p.add_argument("--memory-budget", default=None)
    p.add_argument("--max-batch-size", type=int, default=None)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: the usable CPUs)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TINGXIE_CACHE_DIR", str(args.work / "cache"))
    from bench_paraformer import tingxie_options  # beside this file

    from tingxie.audio.decode import decode_audio
    from tingxie.benchmark.spans import segments_from_spans, speech_spans_ms
    from tingxie.backends.paraformer.backend import ParaformerBackend
    from tingxie.memory.planning import MemoryPlanner
    from tingxie.options import DecodeOptions
    from tingxie.engine.pipeline import Transcriber
    from tingxie.memory.resources import current_rss_bytes, peak_rss_bytes

    model_dir = args.work / "paraformer-large-random"
    if not (model_dir / "model.pt").is_file():
        sys.exit(f"no {model_dir}: run bench/bench_paraformer.py once first (it builds the model)")
    audio = decode_audio(str(args.audio))
    segments = segments_from_spans(audio, speech_spans_ms(audio))
    options = tingxie_options(model_dir, args.compute_type, args.engine, threads=args.threads,
                              max_batch_size=args.max_batch_size, memory_budget=args.memory_budget)
    backend = ParaformerBackend(model_dir, "paraformer-large-random", options.model, DecodeOptions())
    loaded_bytes = current_rss_bytes()

    seconds: collections.Counter = collections.Counter()
    cpu_seconds: collections.Counter = collections.Counter()

    def timed(owner, name: str, label: str) -> None:
        method = getattr(owner, name)

        def wrapper(*a, **k):
            started, cpu_started = time.perf_counter(), time.process_time()
            try:
                return method(*a, **k)
            finally:
                seconds[label] += time.perf_counter() - started
                cpu_seconds[label] += time.process_time() - cpu_started

        setattr(owner, name, wrapper)

    model = backend.asr.model
    for owner, name, label in ((backend, "recognise", "recognise (wall)"), (backend, "encode_items", "encode_items (wall)"),
                               (backend, "encode", "encode (thread time)"), (backend, "features", "fbank (thread time)"),
                               (model, "calc_predictor", "CIF predictor + timestamp head"),
                               (model, "cal_decoder_with_predictor", "decoder (torch)"),
                               (backend, "_decode_item", "post-processing")):
        timed(owner, name, label)
    if backend.onnx is not None:
        timed(backend.onnx, "decoder", "decoder (ONNX Runtime)")
    memory = MemoryPlanner.profiled(backend, options)
    seconds.clear()
    cpu_seconds.clear()
    transcriber = Transcriber(options, backend=backend, memory=memory)
    started, cpu_started = time.perf_counter(), time.process_time()
    transcript = transcriber.transcribe_segments(segments, total_s=len(audio) / 16000)
    total, cpu_total = time.perf_counter() - started, time.process_time() - cpu_started
    print(f"{args.compute_type}, engine {backend.engine}, {backend.threads} threads: {total:.1f} s = "
          f"{len(audio) / 16000 / total:.1f}x real time, CPU {cpu_total:.1f} s, {transcript.stats.batches} batches; "
          f"RSS after load {loaded_bytes / 2**30:.2f} GiB, peak {peak_rss_bytes() / 2**30:.2f} GiB")
    for label, value in seconds.most_common():
        print(f"  {label}: {value:.2f} s, CPU {cpu_seconds[label]:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
