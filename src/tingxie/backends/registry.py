"""Turn model options into a loaded backend."""

from __future__ import annotations

from tingxie.models.registry import resolve_model
from tingxie.options import DecodeOptions, ModelOptions
from tingxie.backends.base import Backend


def load_backend(model: ModelOptions, decode: DecodeOptions, memory_budget: str | None = None) -> Backend:
    """memory_budget (--memory-budget as written): refuse at once a model whose weights exceed it."""
    source = resolve_model(model.name)
    if memory_budget is not None:
        from tingxie.models.weights import check_weights_fit

        check_weights_fit(source, memory_budget, model.compute_type, _device_for_check(model.device))
    if source.family == "whisper":
        from tingxie.backends.whisper.backend import WhisperBackend

        return WhisperBackend(source.path, source.name, model, decode)
    if source.family == "paraformer":
        from tingxie.backends.paraformer.backend import ParaformerBackend

        return ParaformerBackend(source.path, source.name, model, decode)
    raise NotImplementedError(f"no backend for model family {source.family!r}")


def _device_for_check(device: str) -> str:
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
