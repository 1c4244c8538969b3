"""A memory probe whose free memory a test sets: the adaptive budget's tests, in the engine and the server."""

from __future__ import annotations

MiB = 1024**2


class ScriptedProbe:
    """Resident a fixed 100 MiB; `available` free, as the test (or its backend, by batch number) sets it."""

    device = "cpu"

    def __init__(self, available: int):
        self.available = available

    def current_bytes(self):
        return 100 * MiB

    def available_bytes(self):
        return self.available

    def release_cache(self):
        pass
