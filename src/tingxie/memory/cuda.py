"""GPU memory probes. torch and pynvml are optional and imported only when a probe is made.

Two engines, two probes: a torch backend allocates through torch's caching allocator, whose
exact statistics torch exposes; CTranslate2 has its own allocator and exposes nothing, so its
usage is read from the driver through NVML and its peak sampled while a region runs.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from tingxie.errors import TingxieError
from tingxie.memory.region import DEFAULT_SAMPLE_INTERVAL_S, Measurement, PeakSampler


def cuda_index(device: str) -> int:
    """'cuda' -> 0, 'cuda:1' -> 1."""
    name, _, index = device.partition(":")
    if name != "cuda" or (index and not index.isdigit()):
        raise TingxieError(f"not a CUDA device: {device!r}")
    return int(index or 0)


class TorchCudaProbe:
    """Memory held by torch's CUDA caching allocator on one device.

    current_bytes counts live tensors (memory_allocated), not the allocator's cache of freed
    blocks: the next batch reuses that cache, so counting it as used would take the largest
    profiled batch off every later budget. reset_peak empties the cache first, so the
    reserved high-water mark of a region then counts every block the batch needed, rounding
    and fragmentation included (max_memory_allocated would leave those out).
    """

    def __init__(self, device: str = "cuda", torch: Any = None):
        if torch is None:
            import torch  # noqa: PLC0415 - optional dependency, only for torch backends
        self.device = device
        self._cuda = torch.cuda
        self._index = cuda_index(device)
        # the allocator's statistics exist only once CUDA is initialised: before that,
        # reset_peak_memory_stats fails with "Invalid device argument" (seen on an H100)
        self._cuda.init()

    def release_cache(self) -> None:
        """The caching allocator's free blocks back to the device: kept, they are cut to the last
        batch's shapes, and with a budget of 1.30 GiB a run peaked at 1.58 GiB reserved (H100,
        Paraformer-large, bench/bench_paraformer_cuda.py)."""
        self._cuda.empty_cache()

    def reset_peak(self) -> None:
        self.release_cache()
        self._cuda.reset_peak_memory_stats(self._index)

    def peak_bytes(self) -> int:
        return int(self._cuda.max_memory_reserved(self._index))

    def current_bytes(self) -> int:
        return int(self._cuda.memory_allocated(self._index))

    def available_bytes(self) -> int:
        free, _total = self._cuda.mem_get_info(self._index)
        cached = self._cuda.memory_reserved(self._index) - self._cuda.memory_allocated(self._index)
        return int(free + max(0, cached))  # the cache is ours to reuse

    @contextlib.contextmanager
    def measure(self) -> Iterator[Measurement]:
        result = Measurement()
        self.reset_peak()
        result.before_bytes = self.current_bytes()
        try:
            yield result
        finally:
            result.peak_bytes = max(self.peak_bytes(), result.before_bytes)


class NvmlCudaProbe:
    """Device memory in use as the driver reports it, for engines that hide their allocator.

    NVML reports per device, so other processes on the same GPU count as used: a shared GPU
    gives noisy, conservative profiles. CTranslate2 keeps freed blocks cached, so after a large
    batch current_bytes overstates what a next batch must leave alone (conservative too).
    """

    def __init__(
        self, device: str = "cuda", pynvml: Any = None, *, sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S
    ):
        if pynvml is None:
            import pynvml  # noqa: PLC0415 - optional: nvidia-ml-py
        self.device = device
        self._nvml = pynvml
        pynvml.nvmlInit()
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(cuda_index(device))
        self._sampler = PeakSampler(self.current_bytes, sample_interval_s)
        self._sampler.reset()

    def release_cache(self) -> None:
        """Nothing to do: CTranslate2's allocator cannot be asked to let go of its cache."""

    def reset_peak(self) -> None:
        self._sampler.reset()

    def peak_bytes(self) -> int:
        return max(self._sampler.peak, self.current_bytes())  # sampled only inside measure()

    def current_bytes(self) -> int:
        return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)

    def available_bytes(self) -> int:
        return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).free)

    @contextlib.contextmanager
    def measure(self) -> Iterator[Measurement]:
        result = Measurement()
        result.before_bytes = self.current_bytes()
        self._sampler.start()
        try:
            yield result
        finally:
            self._sampler.stop()
            result.peak_bytes = max(self._sampler.peak, result.before_bytes)
