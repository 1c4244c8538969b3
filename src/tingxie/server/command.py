"""`tingxie serve`: its options, and starting the server with one loaded model."""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
from pathlib import Path

from tingxie.cli.arguments import options_from_args
from tingxie.errors import OptionError, TingxieError
from tingxie.server.health import describe


def register(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="serve an OpenAI-compatible transcription API (and the web page at /ui)")
    add_server_arguments(serve)
    serve.add_argument("--no-ui", action="store_true", help="serve the API only, without the web page at /ui")


def add_server_arguments(serve: argparse.ArgumentParser) -> None:
    """The options of `tingxie serve`, shared with `tingxie ui` (the same server, the page first)."""
    from tingxie.cli.arguments import add_option_arguments

    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--db", default=None,
                       help="SQLite file of the jobs (default: <cache dir>/server/tingxie-server.db)")
    serve.add_argument("--upload-dir", default=None, help="where uploads wait (default: 'uploads' beside the database)")
    serve.add_argument("--api-key", action="append", default=[],
                       help="accept this key as 'Authorization: Bearer <key>' (repeatable; also TINGXIE_API_KEYS); "
                            "without any, no authentication")
    serve.add_argument("--max-upload-mb", type=float, default=512, help="largest upload, MiB (413 above)")
    serve.add_argument("--max-duration-s", type=float, default=None, help="longest audio, seconds (413 above)")
    serve.add_argument("--max-queue", type=int, default=64, help="requests and jobs queued at once (429 above)")
    serve.add_argument("--body-timeout-s", type=float, default=60.0,
                       help="longest wait between two reads of a request body, seconds (408 after)")
    serve.add_argument("--max-uploads", type=int, default=32,
                       help="request bodies received at once on the upload routes (429 above); 0: no cap")
    serve.add_argument("--keep-jobs", default=None, metavar="AGE|COUNT",
                       help="finished jobs to keep: an age (7d, 12h, 30m) or a count (1000); older ones and "
                            "their segments are removed (default: keep all)")
    serve.add_argument("--fairness-quantum-s", type=float, default=None,
                       help="compute seconds a request or job gets per turn once it has had one (default: 4 "
                            "model windows, 120 s for Whisper); 0: strict round robin")
    serve.add_argument("--no-cross-batching", action="store_true",
                       help="serve one request or job at a time (batches hold one input's segments only)")
    serve.add_argument("--bench-results", default=None, metavar="JSON",
                       help="`tingxie bench` output to show on the page's Benchmarks tab")
    serve.add_argument("--preload", action="append", default=[], metavar="NAME",
                       help="load this model too at start (repeatable): an embedded name or a model directory "
                            "(a FunASR one included); requests name any of them, or another embedded model, "
                            "loaded on demand and unloaded least recently used when the memory budget needs room")
    serve.add_argument("--debug", action="store_true", help="debug logs")
    add_option_arguments(serve)  # the model, decode, batch and VAD flags, as `tingxie transcribe` has them


def config_from_args(args: argparse.Namespace):
    from tingxie.server.config import ServerConfig, default_db_path, keys_from_env

    return ServerConfig(
        db_path=Path(args.db) if args.db else default_db_path(),
        upload_dir=Path(args.upload_dir) if args.upload_dir else None,
        api_keys=tuple(dict.fromkeys([*args.api_key, *keys_from_env(os.environ)])),
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_duration_s=args.max_duration_s,
        max_queue=args.max_queue,
        max_active=1 if args.no_cross_batching else 0,
        fairness_quantum_s=args.fairness_quantum_s,
        preload=tuple(args.preload),
        body_timeout_s=args.body_timeout_s,
        max_uploads=args.max_uploads,
        keep_jobs=args.keep_jobs,
    )


def run(args: argparse.Namespace) -> int:
    from tingxie.memory.cpu import limit_malloc_arenas
    from tingxie.server import logs

    # first, before the model's threads exist: the cap then holds for every arena (issue 20:
    # 50 clients left +40 MiB with the cap set after the model loaded, +11 MiB with it set here)
    limit_malloc_arenas()

    logs.configure(logging.DEBUG if args.debug else logging.INFO)
    try:
        config = config_from_args(args)
        options = options_from_args(args)  # one builder for every command (cli/arguments.py)
        if options.diarize.enabled:  # the flags are shared; the server diarizes per request (server/speakers.py)
            raise OptionError("--diarize: the server labels speakers per request: send response_format=diarized_json "
                              "or diarize=true (with speakers, min_speakers, max_speakers), with the embedded voice "
                              "encoder (--spk-model is transcribe's)")
        problem = storage_problem(config)
        if problem is not None:
            print(f"tingxie: error: cannot start: {problem}", file=sys.stderr)
            return 1
        from tingxie.engine.pipeline import Transcriber
        from tingxie.server.runner import serve

        transcriber = Transcriber(options)
    except TingxieError as error:
        print(f"tingxie: error: {error}", file=sys.stderr)
        return 2
    logging.getLogger("tingxie.server").info("starting", extra={"fields": {
        "host": args.host, "port": args.port, "model": transcriber.backend.name, "db": str(config.db_path),
        "auth": bool(config.api_keys), "cross_batching": config.max_active == 0,
        "page": None if args.no_ui else f"http://{args.host}:{args.port}/ui/"}})
    try:
        serve(transcriber, config, args.host, args.port, log_level="debug" if args.debug else "info",
              mount=_page(args))
    except TingxieError as error:  # a --preload that cannot load or fit, found as the server starts
        print(f"tingxie: error: cannot start: {error}", file=sys.stderr)
        return 2
    return 0


def storage_problem(config) -> str | None:
    """Why the job database or the upload folder cannot be opened and written, before the model
    loads: a full or read-only disk at start is one line, not a traceback."""
    from tingxie.server.health import StorageHealth
    from tingxie.server.store import JobStore

    try:
        store = JobStore(config.db_path)
    except (OSError, sqlite3.Error) as error:
        return f"the job database {config.db_path} cannot be opened ({describe(error)})"
    try:
        reason = StorageHealth({"job database": Path(config.db_path).parent, "upload folder": config.uploads},
                               store.probe).reason()
    finally:
        store.close()
    return None if reason is None else f"{reason} ({config.db_path}, {config.uploads})"


def _page(args: argparse.Namespace):
    """The web page's mount, unless --no-ui; `tingxie ui` also sends / to it."""
    if args.no_ui:
        return None
    from tingxie.ui.mount import page_mount

    bench = Path(args.bench_results) if args.bench_results else None
    return page_mount(bench, root_redirect=args.command == "ui")
