"""One interface for reading a device's memory, and the choice of implementation per device."""

from __future__ import annotations

import importlib
from typing import ContextManager, Protocol, runtime_checkable

from tingxie.errors import TingxieError
from tingxie.memory.cpu import CpuProbe
from tingxie.memory.cuda import NvmlCudaProbe, TorchCudaProbe, cuda_index
from tingxie.memory.region import Measurement

__all__ = ["CpuProbe", "Measurement", "MemoryProbe", "NvmlCudaProbe", "TorchCudaProbe", "probe_for"]


@runtime_checkable
class MemoryProbe(Protocol):
    """Memory of one device as this process uses it, in bytes."""

    device: str

    def reset_peak(self) -> None:
        """Start a new high-water mark at the current usage."""

    def peak_bytes(self) -> int:
        """The highest usage since the last reset_peak."""

    def current_bytes(self) -> int:
        """Usage now: what the loaded model and runtime hold."""

    def available_bytes(self) -> int:
        """How much more this process could still use."""

    def release_cache(self) -> None:
        """Hand back what the allocator keeps of freed memory, between batches: the next batch's
        peak would land on top of it, beyond what the profile measured (each profiled batch
        starts from an emptied allocator)."""

    def measure(self) -> ContextManager[Measurement]:
        """Measure a block: usage before it and its peak, filled in when it ends."""


def probe_for(device: str, *, engine: str = "ctranslate2") -> MemoryProbe:
    """The probe that sees the memory a backend of this engine allocates on this device.

    engine is "ctranslate2" (the Whisper backend) or "torch" (FunASR): on CUDA the two use
    different allocators, and only torch's can be asked for its own statistics.
    """
    if device == "cpu":
        return CpuProbe()
    cuda_index(device)  # raises on anything but cuda / cuda:N
    if engine == "torch":
        torch = _optional("torch", "torch")
        return TorchCudaProbe(device, torch)
    pynvml = _optional("pynvml", "nvidia-ml-py")
    try:
        return NvmlCudaProbe(device, pynvml)
    except getattr(pynvml, "NVMLError", OSError) as error:
        raise TingxieError(f"cannot read GPU memory of {device} through NVML: {error}") from error


def _optional(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise TingxieError(
            f"measuring GPU memory needs the {module} module, which is not installed "
            f"(pip install {package})"
        ) from error
