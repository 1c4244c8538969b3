"""The server's settings, validated once; the HTTP layer and the service only read them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tingxie.errors import OptionError


def default_db_path() -> Path:
    from tingxie.models.cache_dir import cache_dir

    return cache_dir() / "server" / "tingxie-server.db"


@dataclass(frozen=True)
class ServerConfig:
    db_path: Path = field(default_factory=default_db_path)
    upload_dir: Path | None = None  # None: an "uploads" folder beside the database
    api_keys: tuple[str, ...] = ()  # empty: no authentication
    max_upload_bytes: int = 512 * 2**20
    max_duration_s: float | None = None  # None: no limit
    max_queue: int = 64  # requests and jobs admitted but not finished
    max_active: int = 0  # jobs whose segments may be batched at once; 0: all (cross-request batching)
    queued_segments_per_job: int = 0  # decoded segments a job may hold ahead; 0: one batch's worth
    fairness_quantum_s: float | None = None  # compute seconds per turn (fairness.py); None: 4 model windows
    model_aliases: tuple[str, ...] = ("whisper-1",)
    # Models served on demand besides the embedded ones and the one it starts with (--preload
    # names, model directories); preload: loaded at start, after the first
    models: tuple[str, ...] = ()
    preload: tuple[str, ...] = ()
    body_timeout_s: float = 60.0  # longest wait between two reads of a request body (408 after)
    max_uploads: int = 32  # request bodies being received at once on the upload routes (429 above); 0: no cap
    keep_jobs: str | None = None  # finished jobs kept: "7d", "12h", "30m" (age) or "1000" (count); None: all

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1:
            raise OptionError(f"--max-upload-mb must be positive, not {self.max_upload_bytes} bytes")
        if self.max_duration_s is not None and self.max_duration_s <= 0:
            raise OptionError(f"--max-duration-s must be positive, not {self.max_duration_s}")
        if self.max_queue < 1:
            raise OptionError(f"--max-queue must be at least 1, not {self.max_queue}")
        if self.max_active < 0:
            raise OptionError(f"--max-active must be 0 (no limit) or positive, not {self.max_active}")
        if self.fairness_quantum_s is not None and self.fairness_quantum_s < 0:
            raise OptionError(f"--fairness-quantum-s must not be negative, not {self.fairness_quantum_s}")
        if not self.body_timeout_s > 0:
            raise OptionError(f"--body-timeout-s must be positive, not {self.body_timeout_s}")
        if self.max_uploads < 0:
            raise OptionError(f"--max-uploads must be 0 (no cap) or positive, not {self.max_uploads}")
        if self.keep_jobs is not None:
            parse_keep(self.keep_jobs)  # raises the OptionError naming the value
        if any(not key or key != key.strip() for key in self.api_keys):
            raise OptionError("an API key must be non-empty and have no surrounding spaces")

    @property
    def uploads(self) -> Path:
        return self.upload_dir or Path(self.db_path).parent / "uploads"


def keys_from_env(environ=os.environ) -> tuple[str, ...]:
    """TINGXIE_API_KEYS: keys separated by commas or whitespace."""
    raw = environ.get("TINGXIE_API_KEYS", "")
    return tuple(key for key in raw.replace(",", " ").split() if key)


_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_keep(text: str) -> tuple[float | None, int | None]:
    """--keep-jobs: (age in seconds, None) for "7d", "12h", "30m", "90s"; (None, count) for "1000"."""
    value = text.strip().lower()
    try:
        if value and value[-1] in _UNITS_S:
            seconds = float(value[:-1]) * _UNITS_S[value[-1]]
            if seconds > 0:
                return seconds, None
        elif value.isdigit() and int(value) > 0:
            return None, int(value)
    except ValueError:
        pass
    raise OptionError(f"--keep-jobs must be an age (7d, 12h, 30m, 90s) or a count of jobs (1000), not {text!r}")
