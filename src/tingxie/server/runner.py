"""Build the whole server from a loaded Transcriber, and run it on uvicorn.

serve() blocks (the CLI); running() starts it on a background thread and yields its URL
(tests and benchmarks, with port 0 for a free port).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable, Iterator

import uvicorn

from tingxie.engine.pipeline import Transcriber
from tingxie.memory.cpu import limit_malloc_arenas
from tingxie.server.app import create_app
from tingxie.server.config import ServerConfig
from tingxie.server.retention import Retention
from tingxie.server.metrics import BATCH_BUCKETS, LATENCY_BUCKETS, Metrics
from tingxie.server.service import TranscriptionService

Mount = Callable[[object, TranscriptionService], None]  # adds routes to the FastAPI app (the web page)


def build(transcriber: Transcriber, config: ServerConfig, mount: Mount | None = None) -> tuple[object, TranscriptionService]:
    limit_malloc_arenas()  # before the server's threads exist (`tingxie serve` sets it before the model loads)
    metrics = Metrics()
    service = TranscriptionService(transcriber, config, metrics)
    _register(metrics, service)
    if config.keep_jobs:
        retention = Retention(service.store, config.keep_jobs)
        retention.start()
        service.stop_hooks.append(retention.stop)
        service.finished_hooks.append(retention.poke)
    return create_app(service, config, metrics, mount), service


def _register(metrics: Metrics, service: TranscriptionService) -> None:
    from tingxie.memory.resources import current_rss_bytes, peak_rss_bytes

    def speed() -> float:
        busy = metrics.value("tingxie_busy_seconds_total")
        return metrics.value("tingxie_audio_seconds_done_total") / busy if busy > 0 else 0.0

    metrics.gauge("tingxie_queue_depth", "Requests and jobs admitted and not finished.", lambda: len(service.live))
    metrics.gauge("tingxie_queued_segments", "Decoded segments waiting for a batch.", 
                  lambda: service.queued_segments())  # every model's; holds no model alive
    metrics.counter("tingxie_audio_seconds_done_total", "Audio seconds transcribed (progress of every request and job).")
    metrics.counter("tingxie_busy_seconds_total", "Wall seconds the backend spent running batches.")
    metrics.gauge("tingxie_speed", "Audio seconds transcribed per second of backend time.", speed)
    metrics.gauge("tingxie_memory_peak_bytes", "Peak resident memory of the server process.", peak_rss_bytes)
    metrics.gauge("tingxie_memory_resident_bytes", "Resident memory of the server process now.", current_rss_bytes)
    _register_budget(metrics, service)
    metrics.counter("tingxie_oom_retries_total", "Batches split and retried after running out of memory.")
    metrics.counter("tingxie_batches_total", "Batches run on the backend.")
    metrics.histogram("tingxie_batch_size", "Segments per batch.", BATCH_BUCKETS)
    metrics.counter("tingxie_submitted_total", "Requests and jobs admitted.")
    metrics.counter("tingxie_finished_total", "Requests and jobs finished, by final state.")
    metrics.counter("tingxie_rejected_total", "Requests refused before admission, by reason.")
    metrics.counter("tingxie_requests_total", "HTTP requests, by route, method and status.")
    metrics.histogram("tingxie_request_seconds", "HTTP request latency, by route and method.", LATENCY_BUCKETS)
    for name in ("tingxie_oom_retries_total", "tingxie_batches_total", "tingxie_busy_seconds_total",
                 "tingxie_audio_seconds_done_total"):
        metrics.inc(name, 0)  # present from the first scrape


def _register_budget(metrics: Metrics, service: TranscriptionService) -> None:
    """The memory budget (issue 19): the user's, the working one the adaptive planner last used,
    its shrinks, and the account admission reads (loaded models, decoded audio held and reserved)."""
    def figure(part):
        def read() -> float:
            figures = service.memory_figures()
            return float(part(figures)) if figures is not None else 0.0
        return read

    def planners():
        return [engine.transcriber.memory for engine in list(service.models.engines.values())
                if engine.transcriber.memory is not None]

    def working() -> float:
        planned = [planner.trace.planned for planner in planners() if planner.trace.planned is not None]
        return float(min(planned, default=0))

    metrics.gauge("tingxie_memory_budget_bytes", "The memory budget the server was given (or its default), bytes.",
                  lambda: float(service.models.memory.total_budget_bytes) if service.models.memory else 0.0)
    metrics.gauge("tingxie_memory_working_budget_bytes", "Memory the last batch was planned with: the budget "
                  "less what is resident, or less when the device has less free (adaptive).", working)
    metrics.gauge("tingxie_memory_budget_shrinks", "Times the working budget of a loaded model fell below what "
                  "the budget allows, because the device had less free.",
                  lambda: float(sum(planner.trace.shrinks for planner in planners())))
    metrics.gauge("tingxie_memory_models_bytes", "Loaded models and runtime, as the admission account counts them.",
                  figure(lambda f: f.models))
    metrics.gauge("tingxie_memory_decoded_audio_bytes", "Decoded audio held by admitted requests and jobs.",
                  figure(lambda f: f.audio_held))
    metrics.gauge("tingxie_memory_reserved_bytes", "Decoded audio admitted requests and jobs may hold at most "
                  "(reserved at admission).", figure(lambda f: f.reserved))


def serve(transcriber: Transcriber, config: ServerConfig, host: str, port: int, log_level: str = "info",
          mount: Mount | None = None) -> None:
    app, service = build(transcriber, config, mount)
    service.start()  # the app's lifespan stops it, before uvicorn re-raises a SIGTERM it caught
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, log_level=log_level,
                timeout_graceful_shutdown=5)


@contextlib.contextmanager
def running(transcriber: Transcriber, config: ServerConfig, host: str = "127.0.0.1",
            port: int = 0, mount: Mount | None = None) -> Iterator[tuple[str, TranscriptionService]]:
    app, service = build(transcriber, config, mount)
    service.start()
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                                           lifespan="on", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, name="tingxie-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{bound[0]}:{bound[1]}", service
    finally:
        server.should_exit = True
        thread.join(10)
        service.stop()
