"""ASGI middleware in front of every route: API keys, the upload size limit, latency and access logs.

It runs before any body is read, so an unauthenticated or oversized upload costs no parsing
and no disk. A rejected request's body is read and dropped (up to DRAIN_CAP_BYTES) before
answering, so a client still sending gets the status instead of a reset connection.
"""

from __future__ import annotations

import hmac
import json
import logging
import time

from tingxie.server.api_errors import ApiError
from tingxie.server.limits import MULTIPART_SLACK_BYTES, upload_error
from tingxie.server.metrics import Metrics

log = logging.getLogger("tingxie.server.access")
DRAIN_CAP_BYTES = 16 * 2**20
OPEN_PATHS = ("/healthz",)


class BodyTooLarge(ApiError):
    """Raised from receive() while a body streams in past the limit."""


class Guard:
    def __init__(self, app, *, api_keys: tuple[str, ...], max_upload_bytes: int, metrics: Metrics):
        self.app = app
        self.api_keys = tuple(key.encode() for key in api_keys)
        self.max_body = max_upload_bytes + MULTIPART_SLACK_BYTES
        self.max_upload_bytes = max_upload_bytes
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            rejection = self._reject(scope)
            if rejection is not None:
                await _drain(receive)
                await _answer(send_status, rejection)
            else:
                await self.app(scope, self._counted(receive), send_status)
        finally:
            self._account(scope, status["code"], time.perf_counter() - started)

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

    def _counted(self, receive):
        """receive() that fails once a body without a length header grows past the limit."""
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                if message.get("more_body"):
                    await _drain(receive)
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


async def _drain(receive) -> None:
    drained = 0
    while drained <= DRAIN_CAP_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body"):
            return


async def _answer(send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
