"""`tingxie serve`: its options, and starting the server with one loaded model."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ..errors import TingxieError


def register(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="serve an OpenAI-compatible transcription API (and the web page at /ui)")
    add_server_arguments(serve)
    serve.add_argument("--no-ui", action="store_true", help="serve the API only, without the web page at /ui")


def add_server_arguments(serve: argparse.ArgumentParser) -> None:
    """The options of `tingxie serve`, shared with `tingxie ui` (the same server, the page first)."""
    from ..models import DEFAULT_MODEL, EMBEDDED
    from ..options import DecodeOptions

    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("-m", "--model", default=DEFAULT_MODEL, help=f"{', '.join(EMBEDDED)}, or a model directory")
    serve.add_argument("--language", default=None, help="language code for every request (default: detect per window)")
    serve.add_argument("--beam-size", type=int, default=DecodeOptions.beam_size)
    serve.add_argument("--device", default="auto", help="auto, cpu or cuda")
    serve.add_argument("--compute-type", default="default")
    serve.add_argument("--threads", type=int, default=0, help="CPU threads (default: the CPUs this process may use)")
    serve.add_argument("--db", default=None,
                       help="SQLite file of the jobs (default: <cache dir>/server/tingxie-server.db)")
    serve.add_argument("--upload-dir", default=None, help="where uploads wait (default: 'uploads' beside the database)")
    serve.add_argument("--api-key", action="append", default=[],
                       help="accept this key as 'Authorization: Bearer <key>' (repeatable; also TINGXIE_API_KEYS); "
                            "without any, no authentication")
    serve.add_argument("--max-upload-mb", type=float, default=512, help="largest upload, MiB (413 above)")
    serve.add_argument("--max-duration-s", type=float, default=None, help="longest audio, seconds (413 above)")
    serve.add_argument("--max-queue", type=int, default=64, help="requests and jobs queued at once (429 above)")
    serve.add_argument("--max-batch-size", type=int, default=None, help="default: 8 on CPU, 16 on GPU")
    serve.add_argument("--memory-budget", default=None, help="total memory to stay under: 6GiB, 800MB, 50%%")
    serve.add_argument("--fairness-quantum-s", type=float, default=None,
                       help="compute seconds a request or job gets per turn once it has had one (default: 4 "
                            "model windows, 120 s for Whisper); 0: strict round robin")
    serve.add_argument("--no-cross-batching", action="store_true",
                       help="serve one request or job at a time (batches hold one input's segments only)")
    serve.add_argument("--bench-results", default=None, metavar="JSON",
                       help="`tingxie bench` output to show on the page's Benchmarks tab")
    serve.add_argument("--debug", action="store_true", help="debug logs")


def config_from_args(args: argparse.Namespace):
    from .config import ServerConfig, default_db_path, keys_from_env

    return ServerConfig(
        db_path=Path(args.db) if args.db else default_db_path(),
        upload_dir=Path(args.upload_dir) if args.upload_dir else None,
        api_keys=tuple(dict.fromkeys([*args.api_key, *keys_from_env(os.environ)])),
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_duration_s=args.max_duration_s,
        max_queue=args.max_queue,
        max_active=1 if args.no_cross_batching else 0,
        fairness_quantum_s=args.fairness_quantum_s,
    )


def options_from_args(args: argparse.Namespace):
    from ..options import BatchOptions, DecodeOptions, ModelOptions, TranscribeOptions

    return TranscribeOptions(
        model=ModelOptions(name=args.model, device=args.device, compute_type=args.compute_type, threads=args.threads),
        decode=DecodeOptions(language=args.language, beam_size=args.beam_size),
        batch=BatchOptions(max_batch_size=args.max_batch_size, memory_budget=args.memory_budget),
    )


def run(args: argparse.Namespace) -> int:
    from . import logs

    logs.configure(logging.DEBUG if args.debug else logging.INFO)
    try:
        config = config_from_args(args)
        options = options_from_args(args)
        from ..pipeline import Transcriber
        from .runner import serve

        transcriber = Transcriber(options)
    except TingxieError as error:
        print(f"tingxie: error: {error}", file=sys.stderr)
        return 2
    logging.getLogger("tingxie.server").info("starting", extra={"fields": {
        "host": args.host, "port": args.port, "model": transcriber.backend.name, "db": str(config.db_path),
        "auth": bool(config.api_keys), "cross_batching": config.max_active == 0,
        "page": None if getattr(args, "no_ui", False) else f"http://{args.host}:{args.port}/ui/"}})
    serve(transcriber, config, args.host, args.port, log_level="debug" if args.debug else "info",
          mount=_page(args))
    return 0


def _page(args: argparse.Namespace):
    """The web page's mount, unless --no-ui; `tingxie ui` also sends / to it."""
    if getattr(args, "no_ui", False):
        return None
    from ..ui.mount import page_mount

    bench = Path(args.bench_results) if args.bench_results else None
    return page_mount(bench, root_redirect=args.command == "ui")
