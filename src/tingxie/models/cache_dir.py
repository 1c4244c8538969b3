"""Where tingxie keeps what it builds once (assembled models, ONNX graphs, memory profiles).

Its own module so that the registry and the hub modules it dispatches to can all read it
without importing one another.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """TINGXIE_CACHE_DIR, else $XDG_CACHE_HOME/tingxie, else ~/.cache/tingxie (read now, not at import)."""
    root = os.environ.get("TINGXIE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tingxie"
    )
    return Path(root)
