"""`tingxie transcribe`: many inputs, one loaded model; a bad input never stops the others.

For a file, progress is checkpointed beside the outputs; a run that was killed continues from
its last finished window (--restart ignores the checkpoint). Partial outputs grow as windows
finish; the final files appear atomically at the end.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from tingxie.engine.checkpoint import Checkpoint, checkpoint_path, fingerprint
from tingxie.errors import AudioDecodeError, TingxieError
from tingxie.options import TranscribeOptions
from tingxie.cli.progress import ProgressBar
from tingxie.writers import output_path, write_transcript
from tingxie.writers.incremental import PartialOutputs


def transcribe_inputs(inputs: list[str], options: TranscribeOptions, formats: tuple[str, ...],
                      output_dir: Path, *, quiet: bool = False, debug: bool = False, restart: bool = False) -> int:
    from tingxie.engine.pipeline import Transcriber

    if output_dir.exists() and not output_dir.is_dir():
        print(f"tingxie: error: -o {output_dir}: is a file, not a folder; name a folder for the outputs",
              file=sys.stderr)
        return 2
    if not any(name == "-" or os.path.exists(name) for name in inputs):  # nothing to load a model for
        for name in inputs:
            print(f"tingxie: error: {name}: no such file", file=sys.stderr)
        return 1
    try:
        transcriber = Transcriber(options)
    except TingxieError as error:
        print(f"tingxie: error: {error}", file=sys.stderr)
        return 2
    failures = 0
    for name in inputs:
        try:
            text, summary = transcribe_one(transcriber, name, formats, output_dir, quiet, restart)
        except Exception as error:  # a bad input (or a bug) must not stop the other inputs
            if debug and not isinstance(error, TingxieError):
                raise
            failures += 1
            print(failure_line(name, error), file=sys.stderr)
            continue
        print(text, flush=True)
        if not quiet:
            print(summary, file=sys.stderr)
    return 1 if failures else 0


def failure_line(name: str, error: Exception) -> str:
    """The one line a failed input gets on stderr."""
    if isinstance(error, AudioDecodeError) and error.source == name:
        return f"tingxie: error: {name}: {error.reason}"  # the name once
    if isinstance(error, TingxieError):
        return f"tingxie: error: {name}: {error}"
    if isinstance(error, OSError) and error.filename is not None:  # an output that cannot be written
        where = error.filename if error.filename2 is None else f"{error.filename} -> {error.filename2}"
        return f"tingxie: error: {name}: cannot write {where}: {error.strerror or error}"
    return (f"tingxie: error: {name}: unexpected {type(error).__name__}: {error} "
            "(run with --debug for details)")


def transcribe_one(transcriber, name: str, formats, output_dir: Path, quiet: bool = True,
                   restart: bool = False) -> tuple[str, str]:
    """One input through a loaded transcriber, its outputs written: (its text, a summary line)."""
    from_stdin = name == "-"
    if not from_stdin and not os.path.exists(name):
        raise TingxieError("no such file")
    finals = {fmt: output_path(name, output_dir, fmt) for fmt in formats}
    checkpoint = None
    if not from_stdin:  # a pipe cannot be read again, so it cannot be resumed
        path = checkpoint_path(name, output_dir)
        if restart:
            path.unlink(missing_ok=True)
        checkpoint = Checkpoint(path, fingerprint(name, transcriber.options))
        if checkpoint.resumed and not quiet:
            print(f"{name}: resuming after {len(checkpoint.results)} finished segments", file=sys.stderr)
    partial = PartialOutputs(finals)
    finished = False
    try:
        def on_window(window) -> None:
            partial.add(window.output)
            if checkpoint:  # after the partial files: a window in the checkpoint is in them too
                checkpoint.record(window)

        with ProgressBar(label=os.path.basename(name), enabled=not quiet) as bar:
            transcript = transcriber.transcribe(
                sys.stdin.buffer if from_stdin else name, progress=bar.update, on_window=on_window,
                recorded=checkpoint.recorded if checkpoint else (lambda index: None))
        transcript.source = name
        if checkpoint and checkpoint.resumed:  # the figures cover the interrupted runs too
            transcript.stats = dataclasses.replace(
                transcript.stats, wall_seconds=transcript.stats.wall_seconds + checkpoint.earlier_wall_s)
        for fmt, path in finals.items():
            write_transcript(transcript, path, fmt)
        finished = True
    finally:
        partial.close()
        if checkpoint:
            checkpoint.close(remove=finished)
    stats = transcript.stats
    return transcript.text, (f"{name}: {stats.audio_seconds:.1f} s of audio in {stats.wall_seconds:.1f} s "
            f"({stats.speed:.1f}x real time, peak RSS {stats.peak_rss_bytes / 2**20:.0f} MiB) -> "
            + ", ".join(str(p) for p in finals.values()))
