"""What this process may use and has used: CPUs, resident memory."""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path


def usable_cpus() -> int:
    """CPUs this process may actually run on: affinity mask, capped by a cgroup CPU quota.

    os.cpu_count() reports the host's CPUs, which over-subscribes threads in containers
    (FunASR's default of 4 threads on 2 cores ran 12x slower here).
    """
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, int(quota + 0.5)))
    return max(1, count)


def _cgroup_cpu_quota() -> float | None:
    cgroup_v2 = Path("/sys/fs/cgroup/cpu.max")
    try:
        quota, period = cgroup_v2.read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 else None
    except (OSError, ValueError):
        return None


def peak_rss_bytes(pid: int | str = "self") -> int:
    """High-water mark of a process's resident memory (this one by default).

    VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a process
    started by a large parent (subprocess uses vfork) reports the parent's size as its own
    peak. VmHWM belongs to the address space and starts afresh at exec.
    """
    kib = proc_status_kib(pid, "VmHWM")
    if kib is not None:
        return kib * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def watch_peak_rss(process, interval_s: float = 0.02) -> tuple[int, int]:
    """Wait for a child (a subprocess.Popen) and return (exit code, its peak RSS in bytes),
    read from outside: its VmHWM, polled until it exits (a reaped process has none)."""
    import time

    peak = 0
    while process.poll() is None:
        kib = proc_status_kib(process.pid, "VmHWM")
        if kib:
            peak = max(peak, kib * 1024)
        time.sleep(interval_s)
    return process.returncode, peak


def proc_status_kib(pid: int | str, field: str) -> int | None:
    """A field of /proc/PID/status in KiB ("self" for this process), None where there is none."""
    return status_file_kib(Path(f"/proc/{pid}/status"), field)


def status_file_kib(path: Path, field: str) -> int | None:
    """The one reader of a /proc status file: FIELD's value in KiB, None if absent or unreadable."""
    try:
        with open(path) as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss
