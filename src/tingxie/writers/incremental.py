"""Progress files a reader can follow while a long input is transcribed.

Each text format is appended to `<name>.<fmt>.partial` as windows finish, in time order. The
final files are rendered from the whole transcript and written atomically by write_transcript
(one writer per format), and the partial files are then removed: the finished output is
always complete and valid, and identical whether or not the run was streamed or resumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tingxie.segments import TextSegment
from tingxie.writers import srt, txt, vtt

_HEADERS = {"txt": "", "srt": "", "vtt": vtt.header()}


class PartialOutputs:
    def __init__(self, final_paths: dict[str, Path]):
        self._finals = {fmt: path for fmt, path in final_paths.items() if fmt in _HEADERS}
        self._files: dict[str, tuple[Path, object]] = {}
        self._cue = 0

    def _open(self) -> None:
        # Opened at the first finished window, so an input that fails at once leaves nothing.
        for fmt, final in self._finals.items():
            partial = final.with_name(final.name + ".partial")
            partial.parent.mkdir(parents=True, exist_ok=True)
            handle = open(partial, "w", encoding="utf-8")
            handle.write(_HEADERS[fmt])
            self._files[fmt] = (partial, handle)

    def add(self, pieces: Iterable[TextSegment]) -> None:
        if not self._files:
            self._open()
        for piece in pieces:
            if not txt.format_line(piece):
                continue
            self._cue += 1
            for fmt, (_, handle) in self._files.items():
                handle.write(_format(fmt, self._cue, piece))
        for _, handle in self._files.values():
            handle.flush()

    def close(self) -> None:
        for partial, handle in self._files.values():
            handle.close()
            partial.unlink(missing_ok=True)


def _format(fmt: str, index: int, piece: TextSegment) -> str:
    if fmt == "srt":
        return srt.format_cue(index, piece)
    if fmt == "vtt":
        return vtt.format_cue(piece)
    return txt.format_line(piece)
