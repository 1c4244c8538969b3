"""The `tingxie` command line. Parses options once into frozen dataclasses, then runs."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tingxie import __version__
from tingxie.benchmark.command import register as register_bench, run as run_bench
from tingxie.errors import OptionError, TingxieError
from tingxie.cli.arguments import add_option_arguments, options_from_args
from tingxie.cli.models import register as register_models, run as run_models
from tingxie.options import TranscribeOptions
from tingxie.server.command import register as register_serve, run as run_serve
from tingxie.ui.command import register as register_ui, run as run_ui
from tingxie.writers import FORMATS, needs_word_times


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tingxie", description="Long-audio speech transcription that fits in memory.")
    parser.add_argument("--version", action="version", version=f"tingxie {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("transcribe", help="transcribe audio or video files")
    run.add_argument("inputs", nargs="+", metavar="INPUT", help="audio/video files, or - for standard input")
    run.add_argument("-o", "--output-dir", default=".", help="where to write results (default: .)")
    run.add_argument("-f", "--format", default="all", help="txt, srt, vtt, json, comma-separated, or all (default)")
    run.add_argument("--no-timestamps", action="store_true",
                     help="one text piece per speech window (implied when only txt is written)")
    run.add_argument("--restart", action="store_true", help="ignore the checkpoint of an interrupted run")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    run.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    run.add_argument("--ray-workers", type=int, default=0, metavar="N",
                     help="spread the inputs over N Ray workers, each with its own model and a 1/N share of the "
                          "memory budget and CPUs (the ray extra)")
    run.add_argument("--ray-address", default=None, help="with --ray-workers: join this Ray cluster (default: a local one)")
    add_option_arguments(run)

    register_models(commands)
    register_serve(commands)
    register_bench(commands)
    register_ui(commands)
    return parser


def transcribe_options(args: argparse.Namespace, formats: tuple[str, ...] = FORMATS) -> TranscribeOptions:
    # Word times cost an align pass per window (~14 % of a CPU run with tiny.en, docs/benchmarks.md);
    # plain text never shows them, so txt alone does not pay for it.
    # --diarize: words let a segment be cut where the speaker changes inside it
    return options_from_args(args, timestamps=not args.no_timestamps and (needs_word_times(formats) or args.diarize))


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
        return run_models(args)
    try:
        formats = parse_formats(args.format)
        options = transcribe_options(args, formats)
    except OptionError as error:
        print(f"tingxie: error: {error}", file=sys.stderr)
        return 2
    if args.ray_workers or args.ray_address:
        from tingxie.cli.scaleout import transcribe_on_ray

        try:
            return transcribe_on_ray(args.inputs, options, formats, Path(args.output_dir), workers=args.ray_workers or 1,
                                     address=args.ray_address, quiet=args.quiet, restart=args.restart)
        except TingxieError as error:
            print(f"tingxie: error: {error}", file=sys.stderr)
            return 2
    from tingxie.cli.transcribe import transcribe_inputs

    return transcribe_inputs(args.inputs, options, formats, Path(args.output_dir), quiet=args.quiet, debug=args.debug,
                             restart=args.restart)


if __name__ == "__main__":
    sys.exit(main())
