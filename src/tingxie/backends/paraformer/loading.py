"""Load a FunASR model directory through FunASR's own classes, without its load-time blow-up.

FunASR's AutoModel.build_model builds the model with random weights, then torch.load()s the
whole checkpoint and deep-copies it before copying it into the model: three copies of the
weights at once (3.2 GiB peak for Paraformer-large). Here the configuration is read by FunASR's
own download_model (a local directory is never downloaded), the tokenizer, frontend and model
come from FunASR's registry, the model is built on the meta device (no random weights), and
the checkpoint is memory-mapped (weights_only) and assigned as it is: one copy, file-backed.
"""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tingxie.memory.cpu import release_freed_memory
from tingxie.backends.paraformer.importing import import_funasr

log = logging.getLogger(__name__)


@dataclass
class FunasrModel:
    """A loaded FunASR model with the configuration FunASR's own inference functions expect."""

    model: torch.nn.Module
    kwargs: dict[str, Any] = field(default_factory=dict)  # tokenizer, frontend, device, model_conf ...
    path: Path | None = None
    checkpoint: Path | None = None  # the weights file, memory-mapped

    @property
    def tokenizer(self):
        return self.kwargs.get("tokenizer")

    @property
    def frontend(self):
        return self.kwargs.get("frontend")


def read_config(model_dir: Path) -> dict[str, Any]:
    """FunASR's resolved configuration of a local model directory (paths made absolute)."""
    import_funasr()
    from funasr.download.download_model_from_hub import download_model

    # A model directory that exists is read, never downloaded or checked online. FunASR logs a
    # warning about trust_remote_code on the root logger every time; it is not tingxie's concern.
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        kwargs = download_model(model=str(model_dir), hub="ms", check_latest=False)
    finally:
        logging.disable(previous)
    return dict(kwargs)


def load_funasr_model(model_dir: Path, device: str = "cpu", *, overrides: dict[str, Any] | None = None) -> FunasrModel:
    """Build the model of model_dir with FunASR's classes and its weights memory-mapped."""
    import_funasr()  # registers every model class
    from funasr.register import tables

    kwargs = read_config(Path(model_dir))
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(kwargs.get(key), dict):
            kwargs[key] = {**kwargs[key], **value}
        else:
            kwargs[key] = value
    init_param = kwargs.pop("init_param", None) or str(Path(model_dir) / "model.pt")
    kwargs["device"] = device
    kwargs["batch_size"] = 1

    tokenizer = kwargs.get("tokenizer")
    kwargs["vocab_size"] = -1
    if tokenizer is not None:
        tokenizer = tables.tokenizer_classes.get(tokenizer)(**kwargs.get("tokenizer_conf", {}))
        token_list = getattr(tokenizer, "token_list", None)
        kwargs["token_list"] = token_list
        kwargs["vocab_size"] = len(token_list) if token_list is not None else -1
    kwargs["tokenizer"] = tokenizer

    frontend = kwargs.get("frontend")
    kwargs["input_size"] = None
    if frontend is not None:
        frontend_conf = dict(kwargs.get("frontend_conf", {}))
        frontend = tables.frontend_classes.get(frontend)(**frontend_conf)
        kwargs["input_size"] = frontend.output_size() if hasattr(frontend, "output_size") else None
    kwargs["frontend"] = frontend

    model_class = tables.model_classes.get(kwargs["model"])
    if model_class is None:
        raise RuntimeError(f"FunASR has no model class {kwargs['model']!r} (from {model_dir}/config.yaml)")
    model_conf = {**kwargs.get("model_conf", {}), **kwargs}
    state = load_state_dict(Path(init_param))
    with torch.device("meta"):
        model = model_class(**model_conf)
    model.load_state_dict(_matching_keys(state, model), strict=True, assign=True)
    del state
    if _has_meta_tensors(model):
        # Some tensor is made in __init__ and is not in the checkpoint: build for real instead.
        log.debug("%s keeps tensors outside its state dict; building it on the CPU", kwargs["model"])
        model = model_class(**model_conf)
        model.load_state_dict(_matching_keys(load_state_dict(Path(init_param)), model), strict=True, assign=True)
    model.to(device)
    model.eval()
    release_freed_memory()
    return FunasrModel(model, kwargs, Path(model_dir), Path(init_param))


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, memory-mapped where the file allows it; never unpickles code."""
    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError as error:  # the legacy (pre-zip) format cannot be mapped
        log.debug("cannot memory-map %s (%s); reading it", path, error)
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def _matching_keys(state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Strip a 'module.' prefix (checkpoints saved from DistributedDataParallel), as FunASR does."""
    wanted = model.state_dict().keys()
    out = {}
    for key, value in state.items():
        if key not in wanted and key.startswith("module.") and key[len("module."):] in wanted:
            key = key[len("module."):]
        out[key] = value
    missing = [k for k in wanted if k not in out]
    if missing:
        raise RuntimeError(f"the checkpoint lacks {len(missing)} weights, e.g. {missing[:3]}")
    return {k: out[k] for k in wanted}


def _has_meta_tensors(model: torch.nn.Module) -> bool:
    for module in model.modules():
        for value in list(module.__dict__.values()) + list(module._parameters.values()) + list(module._buffers.values()):
            if isinstance(value, torch.Tensor) and value.is_meta:
                return True
    return False


def drop_mapped_pages(path: Path) -> int:
    """Drop this process's resident pages of a memory-mapped file (madvise MADV_DONTNEED).

    Only for a file mapped read-only in effect (the checkpoint: weights are never written):
    its clean pages are read again from the file if they are used again. Returns the bytes of
    mapping advised.
    """
    if not os.path.exists("/proc/self/maps"):
        return 0
    target = str(Path(path).resolve())
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return 0
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    advised = 0
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() == target:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                if libc.madvise(start, end - start, 4) == 0:  # MADV_DONTNEED
                    advised += end - start
    return advised
