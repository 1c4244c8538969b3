"""Resolve FunASR model names (Paraformer, FSMN-VAD, CT-Transformer punctuation) to directories.

A directory is always used as it is. A known name (paraformer-zh, fsmn-vad, ct-punc, ...) or a
ModelScope id is looked for on this machine first: in tingxie's model cache, then in
ModelScope's own cache. Only where it is not there, and a network is reachable, is it downloaded
from ModelScope (into tingxie's cache). Offline with no local copy, ModelNotFoundError says what
to download and where to put it. No torch or funasr import: models/registry.py uses this module.

A cached copy is checked before it is used: a directory with config.yaml but no model.pt is
incomplete, and a model.pt in torch's zip format that is cut short is damaged; either is a
clear error offline (online, an incomplete copy is downloaded again).
"""

from __future__ import annotations

import logging
import os
import socket
import zipfile
from pathlib import Path
from typing import Callable

from tingxie.errors import ModelNotFoundError
from tingxie.models.cache_dir import cache_dir

log = logging.getLogger(__name__)

PARAFORMER_MODELS = {
    "paraformer-zh": "iic/speech_paraformer-large-vad-punc_asr_nat-zh-cn-16k-common-vocab8404-pytorch",
}
VAD_MODELS = {
    "fsmn-vad": "iic/speech_fsmn_vad_zh-cn-16k-common-pytorch",
}
PUNC_MODELS = {  # FunASR's names for them
    "ct-punc": "iic/punc_ct-transformer_cn-en-common-vocab471067-large",
    "ct-punc-c": "iic/punc_ct-transformer_zh-cn-common-vocab272727-pytorch",
}
SPEAKER_MODELS = {  # --spk-model
    "cam++": "iic/speech_campplus_sv_zh-cn_16k-common",
}
KNOWN = {**PARAFORMER_MODELS, **VAD_MODELS, **PUNC_MODELS, **SPEAKER_MODELS}
MODELSCOPE_HOST = ("www.modelscope.cn", 443)
OFFLINE_VARIABLES = ("TINGXIE_OFFLINE", "MODELSCOPE_OFFLINE", "HF_HUB_OFFLINE")

Downloader = Callable[[str, Path], Path]


def is_funasr_model_dir(path: Path) -> bool:
    """A FunASR model directory: config.yaml and model.pt (as ModelScope downloads them)."""
    path = Path(path)
    return path.is_dir() and (path / "model.pt").is_file() and (
        (path / "config.yaml").is_file() or (path / "configuration.json").is_file()
    )


def is_paraformer_name(name: str) -> bool:
    return name in PARAFORMER_MODELS or name in PARAFORMER_MODELS.values()


def model_id(name: str) -> str | None:
    """The ModelScope id of a known name, the name itself when it looks like an id, else None."""
    if name in KNOWN:
        return KNOWN[name]
    if name in KNOWN.values():
        return name
    return None


def cache_root() -> Path:

    return cache_dir() / "models"


def local_candidates(mid: str) -> list[Path]:
    """Where a ModelScope model may already be on this machine, in the order looked at."""
    roots = [cache_root()]
    modelscope_cache = os.environ.get("MODELSCOPE_CACHE")
    if modelscope_cache:
        roots += [Path(modelscope_cache) / "models", Path(modelscope_cache), Path(modelscope_cache) / "hub"]
    home = Path(os.path.expanduser("~/.cache/modelscope/hub"))
    roots += [home / "models", home]
    return [root / mid for root in roots]


def network_available(timeout_s: float = 3.0) -> bool:
    """Whether ModelScope can be reached; False at once where an offline variable is set."""
    if any(os.environ.get(v, "").strip() not in ("", "0") for v in OFFLINE_VARIABLES):
        return False
    try:
        with socket.create_connection(MODELSCOPE_HOST, timeout=timeout_s):
            return True
    except OSError:
        return False


def modelscope_download(mid: str, target: Path) -> Path:
    try:
        from modelscope.hub.snapshot_download import snapshot_download
    except ImportError as error:
        raise ModelNotFoundError(f"downloading {mid} needs the modelscope package (pip install 'tingxie[funasr]')") from error
    return Path(snapshot_download(mid, local_dir=str(target)))


def resolve_funasr_model(
    name: str,
    what: str = "model",
    *,
    online: Callable[[], bool] = network_available,
    download: Downloader = modelscope_download,
) -> Path:
    """The directory of a FunASR model given by directory, name or ModelScope id.

    what names the model's role in messages ("model", "VAD model", "punctuation model").
    """
    path = Path(name).expanduser()
    if path.is_dir():
        if is_funasr_model_dir(path):
            return path
        raise ModelNotFoundError(f"{name}: not a FunASR model directory (needs config.yaml and model.pt)")
    mid = model_id(name)
    if mid is None:
        known = ", ".join(KNOWN)
        raise ModelNotFoundError(f"unknown {what} {name!r}: use one of {known}, a ModelScope id, or a model directory")
    incomplete = []
    for candidate in local_candidates(mid):
        if is_funasr_model_dir(candidate):
            check_weights_intact(candidate, what, name)
            return candidate
        if candidate.is_dir() and any(candidate.iterdir()):
            incomplete.append(candidate)
    target = cache_root() / mid
    is_online = online()
    if incomplete and not is_online:
        raise ModelNotFoundError(
            f"{what} {name} ({mid}) in {incomplete[0]} is incomplete (needs config.yaml and model.pt) and ModelScope "
            f"cannot be reached: delete it and run `tingxie models pull {name}` on a machine with a network")
    if is_online:
        log.warning("downloading %s (%s) from ModelScope into %s", name, mid, target)
        try:
            found = download(mid, target)
        except ModelNotFoundError:
            raise
        except Exception as error:  # the hub's own errors: network, authentication, missing id
            raise ModelNotFoundError(f"downloading {what} {name} ({mid}) from ModelScope failed: {error}") from error
        if is_funasr_model_dir(found):
            check_weights_intact(found, what, name)
            return found
        raise ModelNotFoundError(f"the download of {mid} into {found} holds no config.yaml and model.pt")
    raise ModelNotFoundError(
        f"{what} {name} ({mid}) is not on this machine and ModelScope cannot be reached. "
        f"On a machine with a network, download it (pip install modelscope; "
        f"modelscope download --model {mid} --local_dir DIR), then copy DIR to {target} "
        f"or pass the directory itself"
    )


def check_weights_intact(path: Path, what: str, name: str) -> None:
    """model.pt in torch's zip format must end with the zip's directory: a copy cut short fails
    here, in one line, not deep inside torch.load. (A file in torch's older format is not checked.)"""
    weights = Path(path) / "model.pt"
    with open(weights, "rb") as file:
        is_zip = file.read(4) == b"PK\x03\x04"
    if is_zip and not zipfile.is_zipfile(weights):
        raise ModelNotFoundError(f"{what} {name}: {weights} is damaged (cut short: no zip directory at its end); "
                                 f"delete {path} and run `tingxie models pull {name}`")
