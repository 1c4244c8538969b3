"""Turn model options into a loaded backend."""

from __future__ import annotations

from ..models import resolve_model
from ..options import DecodeOptions, ModelOptions
from .base import Backend


def load_backend(model: ModelOptions, decode: DecodeOptions) -> Backend:
    source = resolve_model(model.name)
    if source.family == "whisper":
        from .whisper import WhisperBackend

        return WhisperBackend(source.path, source.name, model, decode)
    if source.family == "paraformer":
        from .paraformer import ParaformerBackend

        return ParaformerBackend(source.path, source.name, model, decode)
    raise NotImplementedError(f"no backend for model family {source.family!r}")
