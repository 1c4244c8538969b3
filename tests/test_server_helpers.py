"""Shared pieces of the server tests (no tests here): servers on loopback, fake backends, inputs."""

from __future__ import annotations

import contextlib
import io
import threading
import time
from pathlib import Path

import numpy as np

from long_audio import encode_flac

from tingxie.backends.fake import FakeBackend
from tingxie.options import BatchOptions, TranscribeOptions
from tingxie.engine.pipeline import Transcriber
from tingxie.server.config import ServerConfig
from tingxie.server.runner import running
from tingxie.planner.shapes import InputShape, ShapeRule

DATA = Path(__file__).parent / "data"


def by_time(segment) -> str:
    """Fake text named by the segment's place in its own file (not by its batch-wide index)."""
    return f"speech {segment.start:.2f} to {segment.end:.2f}"


class SlowFakeBackend(FakeBackend):
    """A fake that takes `delay_s` per batch, like a model, and counts concurrent batches."""

    def __init__(self, delay_s: float = 0.0, **kwargs):
        super().__init__(shape=InputShape(ShapeRule.FIXED_WINDOW, 30.0), text_for=by_time, **kwargs)
        self.delay_s = delay_s
        self.lock = threading.Lock()

    def transcribe_batch(self, batch):
        time.sleep(self.delay_s)
        with self.lock:
            return super().transcribe_batch(batch)


def fake_transcriber(delay_s: float = 0.0, max_batch_size: int = 16, **kwargs) -> Transcriber:
    options = TranscribeOptions(batch=BatchOptions(max_batch_size=max_batch_size))
    return Transcriber(options, backend=SlowFakeBackend(delay_s, **kwargs))


@contextlib.contextmanager
def server(transcriber: Transcriber, tmp_path: Path, *, mount=None, **config):
    """(base URL, service) of a server on 127.0.0.1, a free port, its database under tmp_path;
    mount adds routes (the web page)."""
    settings = ServerConfig(**{"db_path": tmp_path / "jobs.db", "upload_dir": tmp_path / "uploads", **config})
    with running(transcriber, settings, mount=mount) as (url, service):
        yield url, service


def uploads_left(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "uploads"
    return sorted(folder.iterdir()) if folder.exists() else []


def flac_bytes(audio: np.ndarray, *, streamed: bool = False) -> bytes:
    """16 kHz mono FLAC; streamed=True writes it as to a pipe, so the header states no length."""

    if not streamed:
        out = io.BytesIO()
        encode_flac(out, audio)
        return out.getvalue()

    class Pipe(io.RawIOBase):  # not seekable: the encoder cannot go back to write the length
        def __init__(self):
            self.data = bytearray()

        def writable(self):
            return True

        def write(self, b):
            self.data += bytes(b)
            return len(b)

    pipe = Pipe()
    encode_flac(pipe, audio)
    return bytes(pipe.data)


def wait_for(predicate, timeout_s: float = 60.0, interval_s: float = 0.05):
    """Poll until predicate() is truthy (and return it); fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {predicate}")
