"""How much more memory this process's cgroup lets it use (containers, systemd slices).

The limit that applies is the smallest along the path from the process's cgroup to the root,
so every ancestor is read. Usage is counted as the kernel's OOM killer and kubelet see it,
the working set: usage minus inactive file cache, which the kernel drops before killing.
"""

from __future__ import annotations

from pathlib import Path

_NO_LIMIT = 1 << 60  # v1 writes 'no limit' as a huge page-rounded number (9223372036854771712)


def cgroup_headroom(
    proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
) -> int | None:
    """Bytes the cgroup limit still allows, or None where no memory limit applies."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    v1_path = v2_path = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2_path = parts[2]
        elif "memory" in parts[1].split(","):
            v1_path = parts[2]
    headrooms = []
    if v1_path is not None:
        headrooms += _headrooms(
            root / "memory", v1_path, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"
        )
    if v2_path is not None:
        headrooms += _headrooms(root, v2_path, "memory.max", "memory.current", "inactive_file")
    return max(0, min(headrooms)) if headrooms else None


def _headrooms(
    mount: Path, cgroup_path: str, limit_file: str, usage_file: str, inactive_key: str
) -> list[int]:
    out = []
    for directory in _candidates(mount, cgroup_path):
        limit = _read_int(directory / limit_file)
        if limit is None or limit >= _NO_LIMIT:
            continue
        usage = _read_int(directory / usage_file)
        if usage is None:
            continue
        inactive = _stat(directory / "memory.stat").get(inactive_key, 0)
        out.append(limit - max(0, usage - inactive))
    return out


def _candidates(mount: Path, cgroup_path: str) -> list[Path]:
    """The process's cgroup directory and its ancestors that exist under the mount.

    Inside a cgroup namespace the mount's root is the process's own cgroup while
    /proc/self/cgroup may still name a longer path, so the mount root itself is always tried.
    """
    parts = [p for p in cgroup_path.split("/") if p and p != ".."]
    dirs = [mount.joinpath(*parts[:n]) for n in range(len(parts), 0, -1)] + [mount]
    seen, out = set(), []
    for d in dirs:
        if d not in seen and d.is_dir():
            seen.add(d)
            out.append(d)
    return out


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return _NO_LIMIT
    try:
        return int(text)
    except ValueError:
        return None


def _stat(path: Path) -> dict[str, int]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out
