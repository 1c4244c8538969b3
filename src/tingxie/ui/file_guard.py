"""The page reads only files uploaded through it: a client-given path is refused with a 400.

Gradio's own check that a file came from its upload folder is skipped when the page is mounted
on another app (mount_gradio_app: the Blocks never "launch"), so a client could send
{"path": "/any/server/file", "meta": {"_type": "gradio.FileData"}} and have the page read it.
Two checks, each enough on its own, whatever Gradio does:

- PageFileGuard, ASGI middleware in front of the page's API, reads each JSON body sent to it
  and refuses (400, OpenAI's error shape) any "path" or "url" that is not a file in the page's
  upload folder, before Gradio sees the request;
- uploaded_file(), called by the page's handlers on every file they are given.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import unquote

from tingxie.server.api_errors import ApiError, bad_request

MAX_JSON_BYTES = 4 * 2**20  # an event's JSON (file uploads go to /upload as multipart, not here)


class PathRefused(ValueError):
    """A file the page was asked to read that it did not receive as an upload."""


def upload_folder() -> Path:
    """Where Gradio keeps the page's uploads (GRADIO_TEMP_DIR, else <temp dir>/gradio)."""
    from gradio.utils import get_upload_folder

    return Path(os.path.realpath(get_upload_folder()))


def uploaded_file(path: str | os.PathLike, folder: Path | None = None) -> Path:
    """The file at path if it is a regular file inside the upload folder; else PathRefused."""
    folder = folder or upload_folder()
    text = os.fspath(path)
    if not text or "\x00" in text:
        raise PathRefused("this file was not uploaded through the page")
    resolved = Path(os.path.realpath(text))  # symlinks and .. resolved before the check
    if not resolved.is_relative_to(folder) or resolved == folder or not resolved.is_file():
        raise PathRefused("this file was not uploaded through the page")
    return resolved


def refused_paths(data, folder: Path) -> list[str]:
    """Every "path" or "url" string in a JSON value that names no uploaded file; "url"s that
    point at the page's own file route are judged by the path they carry."""
    found: list[str] = []

    def visit(value) -> None:
        if isinstance(value, dict):
            for key in ("path", "url"):
                text = value.get(key)
                if isinstance(text, str) and text and not _allowed(key, text, folder):
                    found.append(text)
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)

    visit(data)
    return found


def _allowed(key: str, text: str, folder: Path) -> bool:
    if key == "url":
        # Gradio fills url with its own file route (".../gradio_api/file=<path>"); a file is
        # read from its path, so a url is fine when it names an uploaded file or nothing local.
        marker = "/file="
        if marker not in text:
            return not text.startswith(("http://", "https://", "file:", "/"))
        text = unquote(text.split(marker, 1)[1])
    try:
        uploaded_file(text, folder)
    except PathRefused:
        return False
    return True


class PageFileGuard:
    """ASGI middleware: a JSON body under `prefix` naming a file the page did not receive is a 400."""

    def __init__(self, app, prefix: str, folder: Path | None = None):
        self.app = app
        self.prefix = prefix.rstrip("/") + "/"
        self.folder = folder

    async def __call__(self, scope, receive, send):
        if (scope["type"] != "http" or scope["method"] != "POST"
                or not (scope["path"] + "/").startswith(self.prefix)):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if headers.get(b"content-type", b"").startswith(b"multipart/"):
            return await self.app(scope, receive, send)  # an upload: bytes, never a path
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_JSON_BYTES:
                return await _answer(send, ApiError(413, "request body too large for the page's API",
                                                    code="body_too_large"))
        error = self._check(body)
        if error is not None:
            return await _answer(send, error)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _check(self, body: bytes) -> ApiError | None:
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError:
            return None  # not JSON: Gradio refuses it itself, and names no file we read
        refused = refused_paths(data, self.folder or upload_folder())
        if refused:
            return bad_request("the page reads only files uploaded to it, never a path sent by the client",
                               param="path", code="path_not_allowed")
        return None


async def _answer(send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
