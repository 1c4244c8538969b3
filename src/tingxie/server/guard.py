"""ASGI middleware in front of every route: API keys, the upload size limit, queue admission,
the body-read timeout, the cap on concurrent uploads, security headers, latency and access logs.

Everything it refuses is decided from the headers, before any body is read, so an
unauthenticated, oversized or unadmittable upload costs no parsing and no disk: the answer is
sent at once, while the client may still be sending, and then the rest of its body is read and
dropped (up to DRAIN_CAP_BYTES, each read under the body timeout) so that it sees the status
instead of a reset connection. A body that stalls longer than the timeout between two reads is
answered 408 and its connection released.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Awaitable, Callable

from tingxie.server.api_errors import ApiError
from tingxie.server.limits import MULTIPART_SLACK_BYTES, upload_error
from tingxie.server.metrics import Metrics

log = logging.getLogger("tingxie.server.access")
DRAIN_CAP_BYTES = 16 * 2**20
OPEN_PATHS = ("/healthz",)
UPLOAD_ROUTES = ("/v1/audio/transcriptions", "/v1/audio/translations", "/v1/jobs")  # POST: a body to store
# nosniff everywhere; framing only by this origin (the page itself works, no one else frames it).
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"SAMEORIGIN"),
                    (b"content-security-policy", b"frame-ancestors 'self'"), (b"referrer-policy", b"no-referrer")]


class BodyTooLarge(ApiError):
    """Raised from receive() while a body streams in past the limit."""


class BodyTimeout(ApiError):
    """Raised from receive() when the body stalls past the timeout."""


class Guard:
    def __init__(self, app, *, api_keys: tuple[str, ...], max_upload_bytes: int, metrics: Metrics,
                 admission: Callable[[], Awaitable[None]] | None = None, body_timeout_s: float = 60.0,
                 max_uploads: int = 0):
        self.app = app
        self.api_keys = tuple(key.encode() for key in api_keys)
        self.max_body = max_upload_bytes + MULTIPART_SLACK_BYTES
        self.max_upload_bytes = max_upload_bytes
        self.metrics = metrics
        self.admission = admission  # raises the 429 (queue full) or 503 (storage) of an upload
        self.body_timeout_s = body_timeout_s
        self.max_uploads = max_uploads  # bodies being received at once on the upload routes; 0: no cap
        self.uploading = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500, "started": False}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                message = {**message, "headers": _with_security_headers(message.get("headers", []))}
            await send(message)

        upload = scope["method"] == "POST" and scope["path"] in UPLOAD_ROUTES
        counted = False
        try:
            rejection = self._reject(scope)
            if rejection is None and upload:
                rejection = await self._admit()
            if rejection is None and upload:
                if self.max_uploads and self.uploading >= self.max_uploads:
                    rejection = ApiError(429, f"{self.max_uploads} uploads are already being received; retry "
                                              "in a moment", code="too_many_uploads", headers={"Retry-After": "1"})
                else:
                    self.uploading += 1
                    counted = True
            if rejection is not None:
                await _answer(send_status, rejection)  # at once, from the headers alone
                await _drain(receive, self.body_timeout_s)
            else:
                def body_done():
                    nonlocal counted
                    if counted:
                        counted = False
                        self.uploading -= 1
                try:
                    await self.app(scope, self._counted(receive, body_done), send_status)
                except ApiError as error:  # a stalled or oversized body under a route with no handler for it
                    if status["started"]:
                        raise
                    await _answer(send_status, error)
        finally:
            if counted:
                self.uploading -= 1
            self._account(scope, status["code"], time.perf_counter() - started)

    async def _admit(self) -> ApiError | None:
        if self.admission is None:
            return None
        try:
            await self.admission()
        except ApiError as error:
            return error
        return None

    def _reject(self, scope) -> ApiError | None:
        headers = dict(scope["headers"])
        if self.api_keys and scope["path"] not in OPEN_PATHS and not self._authorized(headers):
            return ApiError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                            code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return upload_error(self.max_upload_bytes)
        return None

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            return False
        # Compare with every key, in constant time, so timing tells nothing about which matched.
        return any([hmac.compare_digest(token, key) for key in self.api_keys])

    def _counted(self, receive, body_done: Callable[[], None]):
        """receive() that fails once a body without a length header grows past the limit, or
        stalls past the body timeout; body_done() is called once the body is all in."""
        seen = 0

        async def counted():
            nonlocal seen
            message = await _timed(receive, self.body_timeout_s)
            seen += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body"):
                body_done()
            if seen > self.max_body:
                if message.get("more_body"):
                    await _drain(receive, self.body_timeout_s)
                error = upload_error(self.max_upload_bytes)
                raise BodyTooLarge(error.status, error.message, error.param, error.code)
            return message

        return counted

    def _account(self, scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        self.metrics.observe("tingxie_request_seconds", seconds, route=route, method=scope["method"])
        self.metrics.inc("tingxie_requests_total", route=route, method=scope["method"], status=str(status))
        client = scope.get("client") or ("", 0)
        log.info("request", extra={"fields": {
            "method": scope["method"], "path": scope["path"], "route": route, "status": status,
            "duration_ms": round(seconds * 1000, 1), "client": client[0]}})


async def _timed(receive, timeout_s: float):
    try:
        return await asyncio.wait_for(receive(), timeout_s)
    except asyncio.TimeoutError:
        raise BodyTimeout(408, f"the request body stalled: nothing arrived for {timeout_s:g} s",
                          code="body_timeout") from None


async def _drain(receive, timeout_s: float) -> None:
    drained = 0
    while drained <= DRAIN_CAP_BYTES:
        try:
            message = await asyncio.wait_for(receive(), timeout_s)
        except asyncio.TimeoutError:
            return
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body"):
            return


def _with_security_headers(headers) -> list:
    present = {name.lower() for name, _ in headers}
    return [*headers, *((name, value) for name, value in SECURITY_HEADERS if name not in present)]


async def _answer(send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
