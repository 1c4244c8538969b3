"""The multipart form of a transcription request, read and checked; the upload saved to disk.

Only the uploaded bytes are ever read: no field is taken as a path or URL on this server,
and the client's file name is kept only (reduced to its last component) to name the audio
in messages.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO

from starlette.datastructures import UploadFile
from starlette.requests import Request

from tingxie.server.api_errors import ApiError, bad_request
from tingxie.server.formats import RESPONSE_FORMATS
from tingxie.server.health import describe, storage_unavailable
from tingxie.server.limits import upload_error
from tingxie.server.work import RequestOptions

GRANULARITIES = ("segment", "word")
# a stream is text deltas; subtitles and segments come whole, but diarized segments follow the
# deltas as transcript.text.segment events once the speakers are known (events.py)
STREAMED_FORMATS = ("json", "text", "diarized_json")
KNOWN_SPEAKER_FIELDS = ("known_speaker_names[]", "known_speaker_names", "known_speaker_references[]",
                        "known_speaker_references")
VAD_SETTINGS = ("threshold", "prefix_padding_ms", "silence_duration_ms")  # server_vad's, OpenAI's names
INCLUDABLE = ("logprobs",)  # include[]: each token of the text with its log-probability (json)


async def read_request(request: Request, max_upload_bytes: int, task: str = "transcribe",
                       ) -> tuple[RequestOptions, UploadFile]:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise bad_request("send the audio as multipart/form-data with a 'file' part", param="file")
    try:
        form = await request.form(max_files=1, max_fields=32, max_part_size=64 * 1024)
    except ApiError:
        raise
    except Exception as error:  # malformed multipart: a client error, never a 500
        raise bad_request(f"malformed multipart body: {getattr(error, 'message', error)}") from None
    upload = form.get("file")
    if upload is None:
        raise bad_request("the 'file' part is required", param="file")
    if not isinstance(upload, UploadFile):
        raise bad_request("'file' must be an uploaded file, not a text field (the server reads no paths)",
                          param="file")
    if upload.size is not None and upload.size > max_upload_bytes:
        raise upload_error(max_upload_bytes)
    return _options(form, upload, task), upload


def _options(form, upload: UploadFile, task: str) -> RequestOptions:
    """The request's options from its text fields, each checked; a translation has no
    language and no timestamp granularities (OpenAI's translations form)."""
    translating = task == "translate"
    granularities = () if translating else tuple(str(g) for g in form.getlist("timestamp_granularities[]") + form.getlist(
        "timestamp_granularities"))
    for granularity in granularities:
        if granularity not in GRANULARITIES:
            raise bad_request(f"timestamp_granularities: {granularity!r} is not one of segment, word",
                              param="timestamp_granularities[]")
    response_format = _text(form, "response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise bad_request(f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, not {response_format!r}",
                          param="response_format")
    if "word" in granularities and response_format != "verbose_json":
        raise bad_request(f"word timestamps need response_format verbose_json, not {response_format!r}",
                          param="timestamp_granularities[]")
    stream = _boolean(form, "stream")
    if stream and response_format not in STREAMED_FORMATS:
        raise bad_request(f"stream=true answers {' or '.join(STREAMED_FORMATS)}, not response_format "
                          f"{response_format!r}", param="stream")
    include = tuple(str(item) for item in form.getlist("include[]") + form.getlist("include"))
    for item in include:
        if item not in INCLUDABLE:
            raise bad_request(f"include: {item!r} is not one of {', '.join(INCLUDABLE)}", param="include[]")
    logprobs = "logprobs" in include
    if logprobs and response_format != "json":  # as OpenAI: the other formats have no place for them
        raise bad_request(f"include logprobs needs response_format json, not {response_format!r}",
                          param="include[]")
    return RequestOptions(
        filename=_display_name(upload.filename),
        model=_text(form, "model") or "",
        response_format=response_format,
        language=None if translating else _text(form, "language") or None,
        prompt=_text(form, "prompt") or None,
        temperature=_temperature(_text(form, "temperature")),
        timestamp_granularities=granularities,
        task=task,
        stream=stream,
        chunking_strategy=None if translating else _chunking_strategy(form),
        **_speaker_fields(form, response_format, translating),
        logprobs=logprobs,
    )


def _speaker_fields(form, response_format: str, translating: bool) -> dict:
    """diarize (implied by diarized_json) and the speaker counts, each a whole number; whether
    they hold together is DiarizeOptions' to say (speakers.diarize_options, at admission)."""
    asked = _boolean(form, "diarize")  # checked even where diarized_json implies it
    diarize = response_format == "diarized_json" or asked
    if translating and diarize:
        raise bad_request("a translation is not diarized: send the audio to /v1/audio/transcriptions for speakers",
                          param="response_format" if response_format == "diarized_json" else "diarize")
    for name in KNOWN_SPEAKER_FIELDS:
        if form.getlist(name):
            raise bad_request(f"{name}: naming speakers from reference clips is not available on this server; speakers "
                              "are labelled Speaker 1, Speaker 2, ... (speakers, min_speakers, max_speakers bound "
                              "their number)", param=name, code="unsupported_known_speakers")
    counts = {}
    for name in ("speakers", "min_speakers", "max_speakers"):
        text = _text(form, name)
        if text:
            try:
                counts[name] = int(text)
            except ValueError:
                raise bad_request(f"{name} must be a whole number, not {text[:40]!r}", param=name,
                                  code="invalid_speakers") from None
    return {"diarize": diarize, **counts}


def _boolean(form, name: str) -> bool:
    text = _text(form, name).lower()
    if text in ("", "false", "0"):
        return False
    if text in ("true", "1"):
        return True
    raise bad_request(f"{name} must be true or false, not {text!r}", param=name)


def _chunking_strategy(form) -> dict | None:
    """None for "auto" or none given; else server_vad's settings, from a JSON text field or
    from bracketed fields (chunking_strategy[type]=server_vad, as the openai client sends it)."""
    text = _text(form, "chunking_strategy")
    fields = {key[len("chunking_strategy["):-1]: _text(form, key) for key in form.keys()
              if key.startswith("chunking_strategy[") and key.endswith("]")}
    if text and fields:
        raise bad_request("send chunking_strategy once: as a value or as bracketed fields", param="chunking_strategy")
    if text in ("", "auto") and not fields:
        return None
    if text:
        try:
            fields = json.loads(text)
        except ValueError:
            raise bad_request(f"chunking_strategy must be 'auto' or a server_vad object, not {text[:80]!r}",
                              param="chunking_strategy") from None
        if not isinstance(fields, dict):
            raise bad_request(f"chunking_strategy must be 'auto' or a server_vad object, not {text[:80]!r}",
                              param="chunking_strategy")
    if fields.get("type") != "server_vad":
        raise bad_request(f"chunking_strategy type must be server_vad, not {fields.get('type')!r}",
                          param="chunking_strategy")
    unknown = sorted(set(fields) - {"type", *VAD_SETTINGS})
    if unknown:
        raise bad_request(f"chunking_strategy: unknown setting {unknown[0]!r}; known: {', '.join(VAD_SETTINGS)}",
                          param="chunking_strategy")
    settings = {}
    for name in VAD_SETTINGS:
        if name in fields:
            try:
                value = float(fields[name])
            except (TypeError, ValueError):
                raise bad_request(f"chunking_strategy {name} must be a number, not {fields[name]!r}",
                                  param="chunking_strategy") from None
            if not math.isfinite(value):
                raise bad_request(f"chunking_strategy {name} must be finite, not {fields[name]!r}",
                                  param="chunking_strategy")
            settings[name] = value
    return settings


def save_upload(source: BinaryIO, directory: Path, max_upload_bytes: int) -> tuple[str, Path]:
    """Copy an upload (a binary file) into the upload folder under a fresh id (blocking: run in a thread)."""
    job_id = uuid.uuid4().hex
    path = directory / f"{job_id}.upload"
    source.seek(0)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
    except OSError as error:  # a full or failing upload folder: nothing partial is left behind
        path.unlink(missing_ok=True)
        raise storage_unavailable(f"upload folder cannot be written: {describe(error)}") from None
    if path.stat().st_size > max_upload_bytes:
        path.unlink(missing_ok=True)
        raise upload_error(max_upload_bytes)
    return job_id, path


def _text(form, name: str) -> str:
    value = form.get(name)
    if value is None:
        return ""
    if isinstance(value, UploadFile):
        raise bad_request(f"'{name}' must be a text field", param=name)
    return value.strip()


def _temperature(text: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise bad_request(f"temperature must be a number, not {text!r}", param="temperature") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise bad_request(f"temperature must be between 0 and 1, not {text}", param="temperature")
    return value


def _display_name(filename: str | None) -> str:
    """The last component of whatever name the client sent (either slash), printable."""
    name = PureWindowsPath(PurePosixPath(filename or "").name).name
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name or "audio"


def remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
