"""The server's settings, validated once; the HTTP layer and the service only read them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tingxie.errors import OptionError


def default_db_path() -> Path:
    from tingxie.models.registry import cache_dir

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
        if any(not key or key != key.strip() for key in self.api_keys):
            raise OptionError("an API key must be non-empty and have no surrounding spaces")

    @property
    def uploads(self) -> Path:
        return self.upload_dir or Path(self.db_path).parent / "uploads"


def keys_from_env(environ=os.environ) -> tuple[str, ...]:
    """TINGXIE_API_KEYS: keys separated by commas or whitespace."""
    raw = environ.get("TINGXIE_API_KEYS", "")
    return tuple(key for key in raw.replace(",", " ").split() if key)
