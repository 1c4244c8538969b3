"""Whisper models by name or Hugging Face repo id, through huggingface_hub's own cache.

A name faster-whisper knows (tiny.en, large-v3, turbo, ...) or any repo id of a CTranslate2
Whisper model (Systran/faster-whisper-small) is looked for in the Hugging Face cache first
(HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub), so a cached model loads with
no network and never waits on one. Only where it is not cached, and downloads are not switched
off (HF_HUB_OFFLINE or TINGXIE_OFFLINE), is it downloaded, with the hub's progress bars on
stderr; the hub checks each file against the size and hash the server gives. `tingxie models
pull` always asks the hub, so it also brings a cached model up to date.

Whatever the cache holds is checked before it is used: the files a CTranslate2 Whisper model
needs, and, where a file is the hub's link into blobs/, its content against the blob's name
(the hub names a blob by its SHA-256 for large files, by its git SHA-1 for small ones). The
hash of a blob is checked once and remembered (tingxie's cache, keyed by size and mtime).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from tingxie.errors import ModelNotFoundError
from tingxie.models.cache_dir import cache_dir

# The names faster-whisper accepts, to the repos it downloads them from (faster_whisper.utils).
WHISPER_MODELS = {
    "tiny.en": "Systran/faster-whisper-tiny.en",
    "tiny": "Systran/faster-whisper-tiny",
    "base.en": "Systran/faster-whisper-base.en",
    "base": "Systran/faster-whisper-base",
    "small.en": "Systran/faster-whisper-small.en",
    "small": "Systran/faster-whisper-small",
    "medium.en": "Systran/faster-whisper-medium.en",
    "medium": "Systran/faster-whisper-medium",
    "large-v1": "Systran/faster-whisper-large-v1",
    "large-v2": "Systran/faster-whisper-large-v2",
    "large-v3": "Systran/faster-whisper-large-v3",
    "large": "Systran/faster-whisper-large-v3",
    "distil-large-v2": "Systran/faster-distil-whisper-large-v2",
    "distil-medium.en": "Systran/faster-distil-whisper-medium.en",
    "distil-small.en": "Systran/faster-distil-whisper-small.en",
    "distil-large-v3": "Systran/faster-distil-whisper-large-v3",
    "distil-large-v3.5": "distil-whisper/distil-large-v3.5-ct2",
    "large-v3-turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
    "turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
}
# What a CTranslate2 Whisper model is made of; the rest of a repo (READMEs, other formats) is not fetched.
ALLOW_PATTERNS = ["config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*"]
REQUIRED = ("model.bin", "config.json")
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TINGXIE_OFFLINE")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def whisper_repo(name: str) -> str | None:
    """The Hugging Face repo of a Whisper name, the name itself when it is a repo id, else None."""
    if name in WHISPER_MODELS:
        return WHISPER_MODELS[name]
    if _REPO_ID.match(name) and not Path(name).expanduser().exists():
        return name
    return None


def hub_cache() -> Path:
    """Where huggingface_hub keeps models, read from the environment now (the hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(xdg) / "huggingface" / "hub"


def offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() not in ("", "0", "false", "no") for v in OFFLINE_VARIABLES)


def repo_folder(repo: str) -> Path:
    """The repo's folder in the cache, as huggingface_hub names it."""
    return hub_cache() / ("models--" + repo.replace("/", "--"))


def cached_snapshot(repo: str) -> Path | None:
    """The snapshot of the repo's main revision in the cache, unchecked; None where there is none."""
    folder = repo_folder(repo)
    try:
        commit = (folder / "refs" / "main").read_text().strip()
    except OSError:
        return None
    snapshot = folder / "snapshots" / commit
    return snapshot if commit and snapshot.is_dir() else None


def resolve_hf_whisper(name: str, *, pull: bool = False) -> Path:
    """The checked snapshot folder of a Whisper name or repo id: the cached one, else downloaded.

    pull: ask the hub even when the model is cached (a newer revision is downloaded)."""
    repo = whisper_repo(name)
    if repo is None:
        raise ModelNotFoundError(f"{name!r} is neither a Whisper model name nor a Hugging Face repo id")
    snapshot = None if pull else cached_snapshot(repo)
    if snapshot is None:
        snapshot = _download(name, repo)
    check_snapshot(name, snapshot)
    return snapshot


def _download(name: str, repo: str) -> Path:
    label = name if name == repo else f"{name} ({repo})"
    if offline():
        raise ModelNotFoundError(
            f"model {label} is not in the Hugging Face cache {hub_cache()} and downloads are off (HF_HUB_OFFLINE): "
            f"run `tingxie models pull {name}` on a machine with a network and copy its "
            f"{repo_folder(repo).name} folder into {hub_cache()}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo, allow_patterns=ALLOW_PATTERNS, cache_dir=hub_cache()))
    except RepositoryNotFoundError as error:
        raise ModelNotFoundError(f"model {label}: no such repo on the Hugging Face Hub (or it is private)") from error
    except LocalEntryNotFoundError as error:  # no network, nothing cached
        raise ModelNotFoundError(
            f"model {label} is not in the Hugging Face cache {hub_cache()} and the Hub cannot be reached: "
            f"run `tingxie models pull {name}` on a machine with a network and copy its "
            f"{repo_folder(repo).name} folder into {hub_cache()}") from error
    except (HfHubHTTPError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelNotFoundError(f"downloading model {label} from the Hugging Face Hub failed: {first_line}") from error


def check_snapshot(name: str, snapshot: Path) -> None:
    """A CTranslate2 Whisper model whose files are all there and, where the cache says, intact."""
    repair = f"delete {snapshot.parent.parent} and run `tingxie models pull {name}`"
    missing = [f for f in REQUIRED if not (snapshot / f).is_file()]
    if not (snapshot / "tokenizer.json").is_file() and not any(snapshot.glob("vocabulary.*")):
        missing.append("tokenizer.json or vocabulary.*")
    if missing:
        raise ModelNotFoundError(f"model {name} in {snapshot} is incomplete (no {', '.join(missing)}): {repair}")
    for file in sorted(snapshot.iterdir()):
        if not blob_matches(file):
            raise ModelNotFoundError(
                f"model {name}: {file} does not match the hash the Hugging Face cache names it by "
                f"(a broken download or a changed file): {repair}")


def blob_matches(file: Path) -> bool:
    """Whether a snapshot file that links into blobs/ holds what the blob's name says.

    True for a file that is not such a link (nothing to check it against)."""
    if not file.is_symlink():
        return True
    blob = file.resolve()
    if not blob.is_file():
        return False
    digest = blob.name
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", digest):
        return True
    stat = blob.stat()
    stamp = _verified_dir() / f"{digest}-{stat.st_size}-{stat.st_mtime_ns}"
    if stamp.exists():
        return True
    if len(digest) == 64:
        hasher = hashlib.sha256()
    else:  # git's blob id: sha1 of "blob <size>\0" and the content
        hasher = hashlib.sha1()
        hasher.update(f"blob {stat.st_size}\0".encode())
    with open(blob, "rb") as source:
        while block := source.read(1 << 22):
            hasher.update(block)
    if hasher.hexdigest() != digest:
        return False
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
    except OSError:
        pass  # a read-only cache: check again next time
    return True


def _verified_dir() -> Path:

    return cache_dir() / "verified-blobs"
