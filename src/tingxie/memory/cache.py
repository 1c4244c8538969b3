"""Fitted memory models kept on disk, one JSON file per profile key."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from tingxie.planner.memory_model import MemoryModel

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the file layout or the meaning of a sample changes


def normalize_key(key: dict[str, Any]) -> dict[str, Any]:
    """The key as it reads back from JSON (tuples become lists, paths strings), for comparison."""
    return json.loads(json.dumps(key, default=str))


def key_digest(key: dict[str, Any]) -> str:
    canonical = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def cache_path(root: Path, key: dict[str, Any]) -> Path:
    return root / f"{key_digest(key)}.json"


def read_model(path: Path, key: dict[str, Any]) -> MemoryModel | None:
    """The cached model for exactly this key, or None (missing, corrupt or for another key)."""
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT or data.get("key") != normalize_key(key):
            return None
        m = data["model"]
        return MemoryModel(float(m["fixed"]), float(m["per_item_s"]), float(m["per_item_s2"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning("ignoring unreadable memory profile %s: %s", path, error)
        return None


def write_model(path: Path, key: dict[str, Any], model: MemoryModel, extra: dict[str, Any]) -> None:
    """Write atomically (temporary file, then rename), so a reader never sees half a file."""
    data = {
        "format": FORMAT,
        "key": normalize_key(key),
        "model": {"fixed": model.fixed, "per_item_s": model.per_item_s, "per_item_s2": model.per_item_s2},
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise

