"""Resident memory (RSS) of this process: what a CPU backend's batches cost."""

from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path
from typing import Callable, Iterator

import psutil

from tingxie.memory.cgroup import cgroup_headroom
from tingxie.memory.resources import status_file_kib
from tingxie.memory.region import DEFAULT_SAMPLE_INTERVAL_S, Measurement, PeakSampler


class CpuProbe:
    """RSS of this process, with an exact high-water mark on Linux.

    Linux keeps the peak RSS (VmHWM) and resets it to the current RSS when "5" is written to
    /proc/self/clear_refs (Linux >= 4.0), so a region's peak is exact however brief. Where that
    file cannot be written (other systems, hardened containers) a thread samples the RSS while
    a `measure()` region runs instead.

    available_bytes is what the process could still grow by: the system's MemAvailable (free
    memory plus cache the kernel can drop), capped by the headroom under a cgroup memory limit,
    since a container is OOM-killed at its limit however much the host has free. Swap is not
    counted: a batch that swaps runs orders of magnitude slower.
    """

    device = "cpu"

    def __init__(
        self,
        *,
        status: Path = Path("/proc/self/status"),
        clear_refs: Path = Path("/proc/self/clear_refs"),
        headroom: Callable[[], int | None] = cgroup_headroom,
        sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
    ):
        self._status = status
        self._clear_refs = clear_refs
        self._headroom = headroom
        self._kernel_peak = self._status_kib("VmHWM") is not None and self._try_clear_refs()
        self._sampler = PeakSampler(self.current_bytes, sample_interval_s)
        self._sampler.reset()

    @property
    def exact(self) -> bool:
        """True when peaks come from the kernel's high-water mark, False when sampled."""
        return self._kernel_peak

    def release_cache(self) -> None:
        """glibc's freed heap back to the kernel (up to 180 MiB kept between whisper-tiny.en batches)."""
        _malloc_trim()

    def reset_peak(self) -> None:
        """Start a new high-water mark, first handing glibc's freed heap back to the kernel.

        glibc keeps freed memory resident for reuse (a trim freed 44-153 MiB between
        whisper-tiny.en batches); left in place, it shifts the next sample by whatever the
        last batch happened to leave, as torch's cache would on a GPU (TorchCudaProbe empties it).
        """
        _malloc_trim()
        if self._kernel_peak and not self._try_clear_refs():
            self._kernel_peak = False  # writable at start-up but not now: sample from here on
        if not self._kernel_peak:
            self._sampler.reset()

    def peak_bytes(self) -> int:
        if self._kernel_peak:
            return self._status_kib("VmHWM") * 1024
        return max(self._sampler.peak, self.current_bytes())  # sampled only inside measure()

    def current_bytes(self) -> int:
        kib = self._status_kib("VmRSS")
        return kib * 1024 if kib is not None else psutil.Process().memory_info().rss

    def available_bytes(self) -> int:
        available = psutil.virtual_memory().available
        headroom = self._headroom()
        return available if headroom is None else min(available, headroom)

    @contextlib.contextmanager
    def measure(self) -> Iterator[Measurement]:
        """Peak RSS while the block runs; read the result after the block ends."""
        result = Measurement()
        self.reset_peak()
        result.before_bytes = self.current_bytes()
        if not self._kernel_peak:
            self._sampler.start()
        try:
            yield result
        finally:
            if not self._kernel_peak:
                self._sampler.stop()
            result.peak_bytes = max(self.peak_bytes(), result.before_bytes)

    def _try_clear_refs(self) -> bool:
        try:
            with open(self._clear_refs, "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def _status_kib(self, field: str) -> int | None:
        return status_file_kib(self._status, field)


def _load_malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc only; musl and macOS lack it
    except (OSError, AttributeError, TypeError):
        return None


_MALLOC_TRIM = _load_malloc_trim()


def _malloc_trim() -> None:
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


release_freed_memory = _malloc_trim  # public name: for loaders, after freeing what loading needed

M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)
SERVER_MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = SERVER_MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for the threads created from now on (a server: one per request).

    glibc gives threads up to 8 arenas per core; each keeps the memory its threads freed, in
    pieces it cannot hand back. A server after 50 concurrent clients stayed 117 MiB above its
    baseline that way (issue 20; docs/benchmarks.md); with 2 arenas it came back to it. Call it
    early: glibc fixes its limit when the arenas first outnumber 8, and arenas made before the
    call stay in use. MALLOC_ARENA_MAX in the environment is the user's choice and is left
    alone. False where there is no glibc."""
    if os.environ.get("MALLOC_ARENA_MAX") or _MALLOPT is None:
        return False
    return bool(_MALLOPT(M_ARENA_MAX, arenas))


def _load_mallopt():
    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return None


_MALLOPT = _load_mallopt()
