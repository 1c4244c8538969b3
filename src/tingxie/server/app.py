"""The HTTP routes: OpenAI's transcription API, durable jobs, health and metrics.

Handlers only translate between HTTP and the service: parse and check the form, save the
upload, submit, wait or answer at once, render. Every error leaves as OpenAI's error JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from tingxie import __version__
from tingxie.audio.decode import probe_duration
from tingxie.errors import AudioDecodeError
from tingxie.server.api_errors import ApiError, bad_request
from tingxie.server.config import ServerConfig
from tingxie.server.form import read_request, remove_quietly, save_upload
from tingxie.server.events import text_events
from tingxie.server.formats import RESPONSE_FORMATS, render, words_of
from tingxie.server.guard import Guard
from tingxie.server.logprobs import logprob_entries
from tingxie.server.limits import duration_error
from tingxie.server.metrics import Metrics
from tingxie.server.service import TranscriptionService
from tingxie.server.speakers import diarized_segments
from tingxie.server.work import RequestOptions, Work

DISCONNECT_POLL_S = 1.0


def create_app(service: TranscriptionService, config: ServerConfig, metrics: Metrics,
               mount: Callable[[FastAPI, TranscriptionService], None] | None = None):
    """The routes behind the Guard; mount adds more to the app (the web page, tingxie.ui)."""
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await run_in_threadpool(service.stop)  # the running batch finishes and is recorded

    app = FastAPI(title="tingxie", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan)
    started = int(time.time())

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        return JSONResponse(ApiError(error.status_code, str(error.detail)).body(), status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        return JSONResponse(bad_request(f"invalid request: {error.errors()}").body(), status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):  # a bug still answers in OpenAI's shape
        return JSONResponse(ApiError(500, f"internal error ({type(error).__name__})").body(), status_code=500)

    @app.get("/healthz")
    async def healthz():
        """503 with the reason while storage cannot be written or the scheduler has stopped."""
        problem = await run_in_threadpool(service.health.reason)
        if problem is None and not service.scheduler.alive:
            problem = "the scheduler has stopped"
        body = {"status": "ok" if problem is None else "unhealthy", "model": service.model_name,
                "queued": len(service.live)}
        return JSONResponse(body if problem is None else {**body, "reason": problem}, status_code=503 if problem else 200)

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": service.models.view(started)}

    @app.get("/v1/models/{model:path}")
    async def model(model: str):
        for row in service.models.view(started):
            if row["id"] == model:
                return row
        raise ApiError(404, f"model {model!r} is not available on this server", param="model", code="model_not_found")

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request):
        return await _answer(request, service, config, task="transcribe")

    @app.post("/v1/audio/translations")
    async def translations(request: Request):
        return await _answer(request, service, config, task="translate")

    @app.post("/v1/jobs", status_code=202)
    async def create_job(request: Request):
        work = await _admit(request, service, config, durable=True)
        return JSONResponse(service.job_view(work.id), status_code=202, headers={"Location": f"/v1/jobs/{work.id}"})

    @app.get("/v1/jobs/{job_id}")
    async def get_job(job_id: str):
        return _job_or_404(service, job_id)

    @app.get("/v1/jobs/{job_id}/result")
    async def job_result(job_id: str, format: str | None = None):
        view = _job_or_404(service, job_id)
        fmt = format or view["response_format"]
        if fmt not in RESPONSE_FORMATS:
            raise bad_request(f"format must be one of {', '.join(RESPONSE_FORMATS)}, not {fmt!r}", param="format")
        if view["state"] != "succeeded":
            reason = f": {view['error']['message']}" if view["error"] else ""
            raise ApiError(409, f"job {job_id} is {view['state']}{reason}; no result", code=f"job_{view['state']}")
        record = await run_in_threadpool(service.store.get, job_id)
        transcript = await run_in_threadpool(service.stored_transcript, record)
        options = RequestOptions.from_json(record.options)
        if fmt == "diarized_json" and not options.diarize:
            raise bad_request(f"job {job_id} was not diarized: send diarize=true or response_format diarized_json "
                              "with the job for speakers", param="format")
        segments = await run_in_threadpool(service.store.segments, job_id)
        body, media_type = render(transcript, fmt, duration_s=record.audio_total_s or 0.0,
                                  temperature=_temperature(options, service), task=options.task,
                                  granularities=options.timestamp_granularities, words=words_of(segments),
                                  logprobs=logprob_entries(s.result for s in segments) if options.logprobs else None)
        return Response(body, media_type=media_type)

    @app.delete("/v1/jobs/{job_id}")
    async def cancel_or_delete_job(job_id: str):
        """An unfinished job is cancelled (and kept, to be read); a finished one is removed with its segments."""
        view = _job_or_404(service, job_id)
        if view["state"] in ("queued", "running"):
            await run_in_threadpool(service.cancel, job_id)
            return _job_or_404(service, job_id)
        if not await run_in_threadpool(service.store.delete, job_id):
            raise ApiError(409, f"job {job_id} cannot be removed now", code="job_busy")
        return {"id": job_id, "object": "transcription.job.deleted", "deleted": True}

    if mount is not None:
        mount(app, service)
    async def admission():  # 429 or 503 from the headers, before an upload's body is read
        await run_in_threadpool(service.check_room)

    return Guard(app, api_keys=config.api_keys, max_upload_bytes=config.max_upload_bytes, metrics=metrics,
                 admission=admission, body_timeout_s=config.body_timeout_s, max_uploads=config.max_uploads)


async def _answer(request: Request, service: TranscriptionService, config: ServerConfig, *, task: str) -> Response:
    """A transcription or translation: streamed as it goes (stream=true) or whole when done."""
    work = await _admit(request, service, config, durable=False, task=task)
    if work.options.stream:
        cancel = lambda: service.cancel(work.id)  # noqa: E731
        segments = (lambda: diarized_segments(service.transcript(work))) \
            if work.options.response_format == "diarized_json" else None
        return StreamingResponse(text_events(work, service.cond, cancel, segments), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    await _wait(work, request, service)
    if work.state != "succeeded":
        raise work.error or ApiError(499, "the request was cancelled", code="cancelled")
    options = work.options
    body, media_type = render(service.transcript(work), options.response_format, duration_s=work.total_s or 0.0,
                              temperature=_temperature(options, service), task=options.task,
                              granularities=options.timestamp_granularities, words=words_of(work.finished.values()),
                              logprobs=logprob_entries(s.result for s in work.results()) if options.logprobs else None)
    return Response(body, media_type=media_type)


def _temperature(options: RequestOptions, service: TranscriptionService) -> float | tuple[float, ...]:
    """The temperature a request was decoded at, where its segments do not say: its own, else the server's."""
    return options.temperature or service.transcriber.options.decode.temperature


async def _admit(request: Request, service: TranscriptionService, config: ServerConfig, *, durable: bool,
                 task: str = "transcribe") -> Work:
    options, upload = await read_request(request, config.max_upload_bytes, task)
    if durable and options.stream:
        await upload.close()
        raise bad_request("a job is not streamed: poll GET /v1/jobs/{id}, or send stream=true to "
                          "/v1/audio/transcriptions", param="stream")
    try:
        service.check_options(options)
        await run_in_threadpool(service.check_room)
        job_id, path = await run_in_threadpool(save_upload, upload.file, config.uploads, config.max_upload_bytes)
    finally:
        await upload.close()
    try:
        total_s = await run_in_threadpool(probe_upload, path, options.filename, config.max_duration_s)
        return await run_in_threadpool(lambda: service.submit(job_id, options, path, total_s, durable=durable))
    except BaseException:
        remove_quietly(path)
        raise


def probe_upload(path, filename: str, max_duration_s: float | None) -> float | None:
    """The length the header states, refusing a corrupt or too long input before it is queued."""
    try:
        seconds = probe_duration(str(path))
    except AudioDecodeError as error:
        raise bad_request(str(error).replace(str(path), filename), param="file", code="invalid_audio") from None
    if seconds is not None and max_duration_s is not None and seconds > max_duration_s:
        raise duration_error(seconds, max_duration_s)
    return seconds


async def _wait(work: Work, request: Request, service: TranscriptionService) -> None:
    """Until the work ends; a client that hangs up cancels its request."""
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()
    work.add_done_callback(lambda _: loop.call_soon_threadsafe(ended.set))
    while not ended.is_set():
        try:
            await asyncio.wait_for(ended.wait(), DISCONNECT_POLL_S)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                await run_in_threadpool(service.cancel, work.id)
                await ended.wait()


def _job_or_404(service: TranscriptionService, job_id: str) -> dict:
    view = service.job_view(job_id)
    if view is None:
        raise ApiError(404, f"no job {job_id!r}", param="job_id", code="job_not_found")
    return view

