"""`tingxie transcribe`: many inputs, one loaded model; a bad input never stops the others."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import TingxieError
from .options import TranscribeOptions
from .progress import ProgressBar
from .writers import output_path, write_transcript


def transcribe_inputs(inputs: list[str], options: TranscribeOptions, formats: tuple[str, ...],
                      output_dir: Path, *, quiet: bool = False, debug: bool = False) -> int:
    from .pipeline import Transcriber

    try:
        transcriber = Transcriber(options)
    except TingxieError as error:
        print(f"tingxie: error: {error}", file=sys.stderr)
        return 2
    failures = 0
    for name in inputs:
        try:
            written = _transcribe_one(transcriber, name, formats, output_dir, quiet)
        except TingxieError as error:
            failures += 1
            print(f"tingxie: error: {name}: {error}", file=sys.stderr)
            continue
        except Exception as error:  # a bug must not stop the other inputs either
            if debug:
                raise
            failures += 1
            print(f"tingxie: error: {name}: unexpected {type(error).__name__}: {error} "
                  "(run with --debug for details)", file=sys.stderr)
            continue
        if not quiet:
            print(written, file=sys.stderr)
    return 1 if failures else 0


def _transcribe_one(transcriber, name: str, formats, output_dir: Path, quiet: bool) -> str:
    if name != "-" and not os.path.exists(name):
        raise TingxieError("no such file")
    source = sys.stdin.buffer if name == "-" else name
    with ProgressBar(label=os.path.basename(name), enabled=not quiet) as bar:
        transcript = transcriber.transcribe(source, progress=bar.update)
    transcript.source = name
    paths = [write_transcript(transcript, output_path(name, output_dir, fmt), fmt) for fmt in formats]
    stats = transcript.stats
    print(transcript.text, flush=True)
    return (f"{name}: {stats.audio_seconds:.1f} s of audio in {stats.wall_seconds:.1f} s "
            f"({stats.speed:.1f}x real time, peak RSS {stats.peak_rss_bytes / 2**20:.0f} MiB) -> "
            + ", ".join(str(p) for p in paths))
