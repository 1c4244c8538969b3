"""Numeric precision for a FunASR model: fp32, fp16/bf16 autocast with a NaN guard, int8.

* float32: as loaded.
* float16, bfloat16 on CUDA and bfloat16 on a CPU with AVX512-BF16 or AMX: the encoder and the
  decoder run under torch.autocast; weights stay fp32, so a batch whose outputs hold a NaN is
  run again in fp32 (the NaN guard). The CIF predictor always runs in fp32: it sums per-frame
  weights into token counts and fire positions, where half precision would move tokens.
* int8 (CPU): dynamic quantization of the Linear layers of the encoder and the decoder (int8
  weights, activations quantized per batch), torch's fbgemm/oneDNN kernels, or ONNX Runtime's
  int8 encoder and decoder (funasr_support.onnx_parts); the timestamp BLSTM in int8 either way.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

import torch

from tingxie.errors import OptionError

CPU_TYPES = ("float32", "bfloat16", "int8")
CUDA_TYPES = ("float32", "float16", "bfloat16")
ALIASES = {"int8_float32": "int8", "default": None, "auto": None}


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        pass
    return False


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError(f"--device {requested}: torch sees no CUDA device")
    return requested


def resolve_compute_type(requested: str, device: str) -> str:
    """fp32 by default (exact, equal to FunASR's output), on CUDA too: there autocast fp16 ran
    Paraformer-large at 0.6x fp32's speed (H100: 350x against 588x real time; it casts the fp32
    weights at every call, and the GPU is not what bounds the run; docs/benchmarks.md).
    Unsupported choices are refused, not degraded."""
    kind = ALIASES.get(requested, requested)
    on_cuda = device.startswith("cuda")
    if kind is None:
        return "float32"
    allowed = CUDA_TYPES if on_cuda else CPU_TYPES
    if kind not in allowed:
        raise OptionError(
            f"--compute-type {requested} is not supported by the Paraformer backend on {device}; "
            f"choose one of {', '.join(allowed)}"
        )
    if kind == "bfloat16" and not on_cuda and not cpu_has_bf16():
        raise OptionError("--compute-type bfloat16 on CPU needs AVX512-BF16 or AMX; use float32 or int8")
    return kind


def quantize_int8(model: torch.nn.Module, parts: tuple[str, ...] = ("encoder", "decoder")) -> None:
    """Replace the Linear layers of these parts with dynamically quantized int8 ones, and
    CifPredictorV3's timestamp BLSTM with an int8 one: it only places timestamps, and int8
    halved its time (B=6, 1450 frames, 2 threads: 0.54 -> 0.26 s; output relative error 2.6e-2)."""
    from torch.ao.quantization import quantize_dynamic

    predictor = getattr(model, "predictor", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notices
        for name in parts:
            part = getattr(model, name, None)
            if part is not None:
                quantize_dynamic(part, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)  # no fp32 copy
        if isinstance(getattr(predictor, "blstm", None), torch.nn.LSTM):
            predictor.blstm = quantize_dynamic(torch.nn.Sequential(predictor.blstm), {torch.nn.LSTM},
                                               dtype=torch.qint8)[0]


class Precision:
    """How one backend runs its encoder and decoder."""

    def __init__(self, compute_type: str, device: str):
        self.compute_type = compute_type
        self.device_type = "cuda" if device.startswith("cuda") else "cpu"
        self.autocast_dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(compute_type)
        self.nan_fallbacks = 0  # batches run again in fp32 after a NaN
        self.active = True  # False while a batch runs again in fp32

    @property
    def guarded(self) -> bool:
        return self.autocast_dtype is not None

    def prepare(self, model: torch.nn.Module, checkpoint=None, parts: tuple[str, ...] = ("encoder", "decoder")) -> None:
        """Ready the model's parts (those torch runs) for this precision."""
        if self.compute_type == "int8":
            quantize_int8(model, parts)
            if checkpoint is not None:
                # quantizing read every fp32 weight of the memory-mapped checkpoint; those pages
                # are no longer used, so they leave this process's resident memory
                from tingxie.backends.paraformer.loading import drop_mapped_pages

                drop_mapped_pages(checkpoint)
        predictor = getattr(model, "predictor", None)
        if self.autocast_dtype is not None and isinstance(getattr(predictor, "blstm", None), torch.nn.LSTM):
            # CifPredictorV3's timestamp head (a BLSTM over 3x upsampled frames) is a quarter of
            # the time once the encoder runs in bf16; it only places timestamps, so it may too.
            predictor.blstm = ReducedLSTM(predictor.blstm, self)

    @contextlib.contextmanager
    def reduced(self, enabled: bool = True) -> Iterator[None]:
        """The context the encoder and decoder run in."""
        if self.autocast_dtype is None or not enabled:
            yield
            return
        with torch.autocast(self.device_type, dtype=self.autocast_dtype):
            yield


class ReducedLSTM(torch.nn.Module):
    """An LSTM run under the precision's autocast, returning fp32 (the guard's fp32 rerun too)."""

    def __init__(self, lstm: torch.nn.LSTM, precision: "Precision"):
        super().__init__()
        self.lstm = lstm
        self.precision = precision

    def forward(self, x, *args):
        with self.precision.reduced(self.precision.active):
            out, state = self.lstm(x, *args)
        return out.float(), state


def has_nan(*tensors: torch.Tensor) -> bool:
    return any(bool(torch.isnan(t).any()) for t in tensors if t is not None and t.is_floating_point())
