"""The weights' size on disk against the memory budget, before a model is loaded.

Loading a model that cannot fit takes seconds to minutes (a large-v3 is 3 GB) and then fails
somewhere inside CTranslate2 or torch; the budget the user gave (--memory-budget) is known
before that, so a model whose weights alone exceed it is refused at once, naming both numbers.

The check is a floor, never a guess that could refuse a budget that works: the memory the
weights take is estimated from the file as the smallest it can be. The Whisper files on the
hub and the embedded ones are 16-bit, and int8 halves them in memory; FunASR's model.pt is
32-bit, and int8 (the ONNX engine) quarters it. Anything else is counted as its size on disk.
"""

from __future__ import annotations

from pathlib import Path

from tingxie.errors import OutOfMemoryError
from tingxie.memory.sizes import format_bytes, parse_memory_budget
from tingxie.models.registry import ModelSource

WEIGHT_SUFFIXES = (".bin", ".pt", ".onnx", ".safetensors")
# (family, compute type) -> bytes in memory per byte on disk, at the least
_SMALLEST_SHARE = {"whisper": 0.5, "paraformer": 0.25}


def weights_bytes(model_dir: Path) -> int:
    """The size of the model's weight files, through the cache's links to their blobs."""
    return sum(file.stat().st_size for file in Path(model_dir).iterdir()
               if file.is_file() and file.suffix in WEIGHT_SUFFIXES)


def resident_floor(source: ModelSource, compute_type: str) -> int:
    """The least memory the weights take loaded with compute_type ("default"/"auto" may pick int8)."""
    size = weights_bytes(source.path)
    if compute_type in ("default", "auto") or compute_type.startswith("int8"):
        return int(size * _SMALLEST_SHARE.get(source.family, 1.0))
    return size


def free_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def check_weights_fit(source: ModelSource, memory_budget: str | None, compute_type: str, device: str = "cpu") -> None:
    """Refuse a model whose weights alone exceed the user's budget. A share of free memory
    ('50%') is read against this machine's RAM, so it is checked only on a CPU."""
    if memory_budget is None:
        return
    relative = memory_budget.strip().endswith("%") or _is_fraction(memory_budget)
    if relative and device != "cpu":
        return
    budget = parse_memory_budget(memory_budget, free_bytes())
    need = resident_floor(source, compute_type)
    if need > budget:
        on_disk = weights_bytes(source.path)
        loaded = "" if need == on_disk else f", at least {format_bytes(need)} loaded as {compute_type}"
        if compute_type in ("default", "auto"):
            loaded = f", at least {format_bytes(need)} loaded as int8"
        raise OutOfMemoryError(
            f"model {source.name}: its weights take {format_bytes(on_disk)} on disk{loaded}, more than "
            f"--memory-budget {memory_budget} ({format_bytes(budget)}): raise the budget or choose a smaller model")


def _is_fraction(text: str) -> bool:
    try:
        return float(text) <= 1
    except ValueError:
        return False
