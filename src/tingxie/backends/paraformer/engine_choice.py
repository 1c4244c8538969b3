"""Which engine runs Paraformer's encoder and decoder: ONNX Runtime (exported once) or torch.

auto picks ONNX Runtime for float32 and int8 on a CPU (bfloat16 stays in torch: ONNX Runtime
has no bf16 kernels for x86); a failed export then warns and keeps torch. --engine onnx asks for
it and fails with the reason. Imports torch only through the export module, lazily.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tingxie.errors import OptionError

log = logging.getLogger(__name__)


def load_onnx_parts(engine: str, *, device: str, compute_type: str, model_path: Path, checkpoint: Path,
                    threads: int):
    """The encoder and decoder as ONNX Runtime sessions (onnx_parts.OnnxParts), or None for torch's."""
    if engine == "torch":
        return None
    if not (device == "cpu" and compute_type in ("float32", "int8")):
        if engine == "onnx":
            raise OptionError(f"--engine onnx runs float32 or int8 on a CPU, not {compute_type} on {device}")
        return None
    from tingxie.backends.paraformer import onnx_export
    from tingxie.backends.paraformer.onnx_parts import OnnxParts

    try:
        paths = onnx_export.exported_parts(model_path, checkpoint, int8=compute_type == "int8")
    except (onnx_export.ExportError, ImportError, OSError) as error:
        if engine == "onnx":
            raise onnx_export.ExportError(str(error)) from error
        log.warning("running the encoder and decoder in torch: %s", error)
        return None
    return OnnxParts.load(paths, threads, int8=compute_type == "int8")
