"""Turn model options into a loaded backend."""

from __future__ import annotations

from tingxie.models.registry import resolve_model
from tingxie.options import DecodeOptions, ModelOptions
from tingxie.backends.base import Backend


def load_backend(model: ModelOptions, decode: DecodeOptions) -> Backend:
    source = resolve_model(model.name)
    if source.family == "whisper":
        from tingxie.backends.whisper.backend import WhisperBackend

        return WhisperBackend(source.path, source.name, model, decode)
    if source.family == "paraformer":
        from tingxie.backends.paraformer.backend import ParaformerBackend

        return ParaformerBackend(source.path, source.name, model, decode)
    raise NotImplementedError(f"no backend for model family {source.family!r}")
