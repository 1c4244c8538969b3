"""Write a file so that readers see either the old content or the whole new content."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` through a temp file and a rename.

    A crash or error midway never leaves a partial file at `path`: the temp file
    lives in the same directory (so os.replace is an atomic rename on one file
    system) and is removed on any failure, including KeyboardInterrupt.
    """
    path = Path(path)
    mode = _target_mode(path)
    tmp = tempfile.NamedTemporaryFile(
        mode="w",
        encoding="utf-8",
        newline="",  # write "\n" as-is on every platform
        delete=False,
        dir=path.parent,
        prefix="." + path.name,
        suffix=".tmp",
    )
    try:
        with tmp:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        # NamedTemporaryFile creates 0600; give the result the mode a plain open() would.
        os.chmod(tmp.name, mode)
        os.replace(tmp.name, path)
    except BaseException:
        try:
            os.unlink(tmp.name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _target_mode(path: Path) -> int:
    """Keep an existing file's permissions; otherwise 0666 less the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        pass
    # The umask can only be read by setting it; restore it at once.
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; best effort, as not every OS allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
