"""What the page shows of a job: a status line, its figures, the timed transcript, the files.

Pure formatting of the job view dict (the server's GET /v1/jobs/{id} shape) and a Transcript;
the files are rendered by tingxie's writers, one per format.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from tingxie.segments import Transcript
from tingxie.memory.sizes import format_bytes
from tingxie.writers import FORMATS, output_path, write_transcript
from tingxie.writers.cues import clock, cue_span, cue_text, has_text

STATE_WORDS = {"queued": "Waiting for its turn", "running": "Transcribing", "succeeded": "Done",
               "failed": "Failed", "cancelled": "Cancelled"}


def status_line(view: dict | None) -> str:
    if view is None:
        return "Choose a file or record, then press **Start**."
    progress = view["progress"]
    done, total = progress["audio_done_s"], progress["audio_total_s"]
    name = view["filename"]
    if view["state"] == "failed":
        message = view["error"]["message"] if view["error"] else "unknown reason"
        return f"**Failed:** {message if message.startswith(name) else f'{name}: {message}'}"
    of_total = f" of {_duration(total)} ({progress['fraction']:.0%})" if total else ""
    speed = f", {view['speed']:.1f}× real time" if view["speed"] else ""
    return f"**{STATE_WORDS.get(view['state'], view['state'])}:** {name}: {_duration(done)}{of_total} transcribed{speed}"


def figures(view: dict | None) -> str:
    """The run's figures as a Markdown table; a figure not recorded shows as a dash."""
    if view is None:
        return ""
    total = view["progress"]["audio_total_s"]
    peak = view.get("peak_memory_bytes")
    rows = [("model", view.get("model") or "–"),
            ("runs on", "the server's shared scheduler" if view.get("runs_on") == "server" else "the page's runner"),
            ("audio length", _duration(total) if total else "–"),
            ("wall time", _duration(view.get("wall_s")) if view.get("wall_s") else "–"),
            ("speed", f"{view['speed']:.1f}× real time" if view["speed"] else "–"),
            ("peak memory", format_bytes(peak) if peak else "–"),
            ("batches", str(view.get("batches", "–"))),
            ("OOM retries", str(view.get("oom_retries", "–"))),
            ("segments", str(view["progress"]["segments_done"]))]
    return "| figure | value |\n| --- | --- |\n" + "\n".join(f"| {name} | {value} |" for name, value in rows)


def timed_text(transcript: Transcript) -> str:
    """One line per piece: [start → end] text (the subtitles' rounded times); diarized, the
    speaker before the text, as the srt file has it."""
    lines = []
    for piece in transcript.segments:
        if has_text(piece):
            start, end = cue_span(piece)
            who = f"{piece.speaker}: " if piece.speaker else ""
            lines.append(f"[{clock(start, '.')} → {clock(end, '.')}]  {who}{cue_text(piece.text)}")
    return "\n".join(lines)


RESULT_FILES_KEPT_S = 24 * 3600  # download copies are rebuilt from the job store whenever a job is viewed


def result_files(transcript: Transcript, job_id: str, stem: str, root: Path | None = None) -> dict[str, Path]:
    """The transcript in every output format, in a folder of this job under the temp dir;
    other jobs' folders not written for a day are removed, so the copies do not pile up."""
    root = root or Path(tempfile.gettempdir()) / "tingxie-page"
    folder = root / job_id
    files = {fmt: write_transcript(transcript, output_path(stem or "transcript", folder, fmt), fmt) for fmt in FORMATS}
    _remove_stale(root, keep=folder)
    return files


def _remove_stale(root: Path, keep: Path) -> None:
    cutoff = time.time() - RESULT_FILES_KEPT_S
    for folder in root.iterdir():
        try:
            if folder != keep and folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # removed meanwhile by another viewer
            continue


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
