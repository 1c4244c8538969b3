"""Transcript output: one module per format, chosen by name, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

from tingxie.errors import OptionError
from tingxie.segments import Transcript
from tingxie.writers import json_format, srt, txt, vtt
from tingxie.writers.atomic import atomic_write_text

FORMATS = ("txt", "srt", "vtt", "json")
TIMED_FORMATS = ("srt", "vtt", "json")  # formats whose segments carry times worth aligning words for


def needs_word_times(formats) -> bool:
    """Whether any of these formats shows times finer than a whole speech window."""
    return any(fmt in TIMED_FORMATS for fmt in formats)


_RENDERERS = {
    "txt": txt.render,
    "srt": srt.render,
    "vtt": vtt.render,
    "json": json_format.render,
}


def render(transcript: Transcript, fmt: str) -> str:
    """The whole output file for `fmt` as a string."""
    return _RENDERERS[_check_format(fmt)](transcript)


def write_transcript(transcript: Transcript, path: str | os.PathLike, fmt: str) -> Path:
    """Render, then write atomically; a failure leaves any existing file untouched."""
    text = render(transcript, fmt)  # before touching the disk, so a bad render writes nothing
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path


def output_path(input_path: str | os.PathLike, output_dir: str | os.PathLike, fmt: str) -> Path:
    """Where the output for an input goes: <output_dir>/<input stem>.<fmt>, "stdin" for "-"."""
    fmt = _check_format(fmt)
    stem = "stdin" if str(input_path) == "-" else Path(input_path).stem
    return Path(output_dir) / f"{stem}.{fmt}"


def _check_format(fmt: str) -> str:
    if fmt not in _RENDERERS:
        raise OptionError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt
