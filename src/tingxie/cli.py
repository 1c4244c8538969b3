"""The `tingxie` command line. Parses options once into frozen dataclasses, then runs."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .benchmark.command import register as register_bench, run as run_bench
from .errors import OptionError, TingxieError
from .funasr_support.options import add_funasr_arguments, with_funasr_options
from .models import DEFAULT_MODEL, EMBEDDED
from .options import BatchOptions, DecodeOptions, ModelOptions, TranscribeOptions, VadOptions, parse_batch_size
from .server.command import register as register_serve, run as run_serve
from .ui.command import register as register_ui, run as run_ui
from .writers import FORMATS, needs_word_times


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tingxie", description="Long-audio speech transcription that fits in memory.")
    parser.add_argument("--version", action="version", version=f"tingxie {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("transcribe", help="transcribe audio or video files")
    run.add_argument("inputs", nargs="+", metavar="INPUT", help="audio/video files, or - for standard input")
    run.add_argument("-o", "--output-dir", default=".", help="where to write results (default: .)")
    run.add_argument("-f", "--format", default="all", help="txt, srt, vtt, json, comma-separated, or all (default)")
    run.add_argument("-m", "--model", default=DEFAULT_MODEL, help=f"{', '.join(EMBEDDED)}, or a model directory")
    run.add_argument("--language", default=None, help="language code (default: detect per window)")
    run.add_argument("--task", default="transcribe", help="transcribe or translate (to English)")
    run.add_argument("--beam-size", type=int, default=DecodeOptions.beam_size)
    run.add_argument("--no-timestamps", action="store_true",
                     help="one text piece per speech window (implied when only txt is written)")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda")
    run.add_argument("--compute-type", default="default", help="default (Whisper: int8 on CPU, float16 on CUDA; Paraformer: float32), int8, float16, ...")
    run.add_argument("--threads", type=int, default=0, help="CPU threads (default: the CPUs this process may use)")
    run.add_argument("--replicas", type=int, default=0,
                     help="Whisper on a CPU: model copies side by side, each taking a batch's windows one at a time "
                          "(default: one per thread, up to 4)")
    run.add_argument("--batch-size-s", default="auto", help="'auto' or seconds of audio per batch (FunASR semantics)")
    run.add_argument("--batch-threshold-s", type=float, default=None, help="a segment longer than this is batched alone")
    run.add_argument("--max-batch-size", type=int, default=None,
                     help="most segments a batch (default: 8 on CPU, 16 on GPU; the memory budget may lower it)")
    run.add_argument("--memory-budget", default=None,
                     help="total memory to stay under: 6GiB, 800MB, 50%% or 0.5 of free (default: 70%% of free)")
    run.add_argument("--vad-threshold", type=float, default=VadOptions.threshold)
    run.add_argument("--max-segment", type=float, default=VadOptions.max_segment_s, help="longest speech segment, seconds")
    run.add_argument("--restart", action="store_true", help="ignore the checkpoint of an interrupted run")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    run.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    run.add_argument("--ray-workers", type=int, default=0, metavar="N",
                     help="spread the inputs over N Ray workers, each with its own model and a 1/N share of the "
                          "memory budget and CPUs (the ray extra)")
    run.add_argument("--ray-address", default=None, help="with --ray-workers: join this Ray cluster (default: a local one)")
    add_funasr_arguments(run)

    commands.add_parser("models", help="list the embedded models")
    register_serve(commands)
    register_bench(commands)
    register_ui(commands)
    return parser


def options_from_args(args: argparse.Namespace, formats: tuple[str, ...] = FORMATS) -> TranscribeOptions:
    # Word times cost an align pass per window (~14 % of a CPU run with tiny.en, docs/benchmarks.md);
    # plain text never shows them, so txt alone does not pay for it.
    timestamps = not args.no_timestamps and needs_word_times(formats)
    return TranscribeOptions(
        model=ModelOptions(name=args.model, device=args.device, compute_type=args.compute_type, threads=args.threads,
                           replicas=args.replicas),
        decode=DecodeOptions(language=args.language, task=args.task, beam_size=args.beam_size,
                             timestamps=timestamps),
        vad=VadOptions(threshold=args.vad_threshold, max_segment_s=args.max_segment,
                       merge_max_s=min(VadOptions.merge_max_s, args.max_segment)),
        batch=BatchOptions(batch_size_s=parse_batch_size(args.batch_size_s),
                           batch_threshold_s=args.batch_threshold_s, max_batch_size=args.max_batch_size,
                           memory_budget=args.memory_budget),
    )


def parse_formats(text: str) -> tuple[str, ...]:
    if text == "all":
        return FORMATS
    formats = tuple(dict.fromkeys(f.strip() for f in text.split(",") if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown:
        raise OptionError(f"--format takes {', '.join(FORMATS)} or all, not {text!r}")
    return formats


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if getattr(args, "debug", False) else logging.WARNING,
                        format="tingxie: %(levelname)s: %(message)s")
    if args.command == "serve":
        return run_serve(args)
    if args.command == "bench":
        return run_bench(args, argv)
    if args.command == "ui":
        return run_ui(args)
    if args.command == "models":
        for name, description in EMBEDDED.items():
            print(f"{name:18} {description}")
        return 0
    try:
        formats = parse_formats(args.format)
        options = with_funasr_options(options_from_args(args, formats), args)
    except OptionError as error:
        print(f"tingxie: error: {error}", file=sys.stderr)
        return 2
    if args.ray_workers or args.ray_address:
        from .scaleout import transcribe_on_ray

        try:
            return transcribe_on_ray(args.inputs, options, formats, Path(args.output_dir), workers=args.ray_workers or 1,
                                     address=args.ray_address, quiet=args.quiet, restart=args.restart)
        except TingxieError as error:
            print(f"tingxie: error: {error}", file=sys.stderr)
            return 2
    from .transcribe_command import transcribe_inputs

    return transcribe_inputs(args.inputs, options, formats, Path(args.output_dir), quiet=args.quiet, debug=args.debug,
                             restart=args.restart)


if __name__ == "__main__":
    sys.exit(main())
