"""Memory probes: real RSS on this machine, CUDA probes through fake torch and pynvml modules."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import psutil
import pytest

from tingxie.errors import TingxieError
from tingxie.memory.probes import CpuProbe, MemoryProbe, NvmlCudaProbe, TorchCudaProbe, probe_for
from tingxie.memory.cgroup import cgroup_headroom

MB = 1_000_000
CLEAR_REFS = Path("/proc/self/clear_refs")


def _clear_refs_writable() -> bool:
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


linux_hwm = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _clear_refs_writable(),
    reason="needs Linux with a writable /proc/self/clear_refs",
)


def _allocate(nbytes: int) -> np.ndarray:
    return np.ones(nbytes, dtype=np.uint8)  # ones, not zeros: every page is written, so resident


# --- CpuProbe ---------------------------------------------------------------------------


@linux_hwm
def test_cpu_probe_sees_a_200_mb_peak_and_reset_lowers_it():
    probe = CpuProbe()
    assert probe.exact and isinstance(probe, MemoryProbe)
    with probe.measure() as measured:
        block = _allocate(200 * MB)
        del block
    assert measured.added_bytes >= 190 * MB
    high = probe.peak_bytes()
    assert high >= measured.before_bytes + 190 * MB  # the mark outlives the freed array
    probe.reset_peak()
    assert probe.peak_bytes() <= high - 150 * MB
    assert abs(probe.peak_bytes() - probe.current_bytes()) < 20 * MB


def test_cpu_probe_samples_when_clear_refs_cannot_be_written(tmp_path):
    probe = CpuProbe(clear_refs=tmp_path / "absent" / "clear_refs", sample_interval_s=0.002)
    assert not probe.exact
    with probe.measure() as measured:
        block = _allocate(200 * MB)
        time.sleep(0.05)  # the sampler polls; the peak must last a few intervals to be seen
        del block
    assert measured.added_bytes >= 190 * MB
    probe.reset_peak()
    assert probe.peak_bytes() < measured.peak_bytes - 150 * MB


def test_cpu_probe_without_proc_uses_psutil(tmp_path):
    probe = CpuProbe(status=tmp_path / "status", clear_refs=tmp_path / "clear_refs")
    assert not probe.exact
    assert abs(probe.current_bytes() - psutil.Process().memory_info().rss) < 20 * MB


def test_cpu_available_is_capped_by_the_cgroup_headroom():
    assert CpuProbe(headroom=lambda: 123).available_bytes() == 123
    free = psutil.virtual_memory().available
    assert abs(CpuProbe(headroom=lambda: None).available_bytes() - free) < 200 * MB


# --- cgroup headroom ---------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_headroom_counts_the_working_set(tmp_path):
    _write(tmp_path / "proc", "0::/app/job\n")
    job = tmp_path / "cg" / "app" / "job"
    _write(job / "memory.max", "1000000\n")
    _write(job / "memory.current", "600000\n")
    _write(job / "memory.stat", "anon 400000\ninactive_file 100000\n")
    assert cgroup_headroom(tmp_path / "proc", tmp_path / "cg") == 1000000 - 500000


def test_cgroup_takes_the_tightest_ancestor_and_ignores_no_limit(tmp_path):
    _write(tmp_path / "proc", "0::/app/job\n")
    _write(tmp_path / "cg" / "app" / "memory.max", "700000\n")
    _write(tmp_path / "cg" / "app" / "memory.current", "600000\n")
    _write(tmp_path / "cg" / "app" / "job" / "memory.max", "max\n")
    _write(tmp_path / "cg" / "app" / "job" / "memory.current", "10\n")
    assert cgroup_headroom(tmp_path / "proc", tmp_path / "cg") == 100000


def test_cgroup_v1_and_no_limit(tmp_path):
    _write(tmp_path / "proc", "4:memory:/docker/abc\n1:cpu:/\n0::/\n")
    job = tmp_path / "cg" / "memory" / "docker" / "abc"
    _write(job / "memory.limit_in_bytes", "2000000\n")
    _write(job / "memory.usage_in_bytes", "500000\n")
    _write(job / "memory.stat", "cache 1\ntotal_inactive_file 200000\n")
    assert cgroup_headroom(tmp_path / "proc", tmp_path / "cg") == 2000000 - 300000
    _write(job / "memory.limit_in_bytes", "9223372036854771712\n")
    assert cgroup_headroom(tmp_path / "proc", tmp_path / "cg") is None
    assert cgroup_headroom(tmp_path / "missing", tmp_path / "cg") is None


def test_cgroup_namespace_root_is_the_process_cgroup(tmp_path):
    # In a cgroup namespace the mount root is the container's own cgroup.
    _write(tmp_path / "proc", "0::/\n")
    _write(tmp_path / "cg" / "memory.max", "5000\n")
    _write(tmp_path / "cg" / "memory.current", "6000\n")
    assert cgroup_headroom(tmp_path / "proc", tmp_path / "cg") == 0  # over the limit: nothing left


# --- CUDA probes through fake modules -----------------------------------------------------


class FakeTorchCuda:
    """Just enough of torch.cuda, recording every call."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.allocated, self.reserved, self.max_reserved, self.free = 1000, 1500, 1500, 10_000

    def _log(self, *call):
        self.calls.append(call)

    def init(self):
        self._log("init")

    def empty_cache(self):
        self._log("empty_cache")
        self.reserved = self.allocated

    def reset_peak_memory_stats(self, index):
        self._log("reset_peak_memory_stats", index)
        self.max_reserved = self.reserved

    def max_memory_reserved(self, index):
        self._log("max_memory_reserved", index)
        return self.max_reserved

    def memory_allocated(self, index):
        return self.allocated

    def memory_reserved(self, index):
        return self.reserved

    def mem_get_info(self, index):
        self._log("mem_get_info", index)
        return self.free, 80_000

    def run_batch(self, working: int):
        """What a batch does to the allocator: grow, peak, free into the cache."""
        self.reserved = self.allocated + working
        self.max_reserved = max(self.max_reserved, self.reserved)


def test_torch_probe_resets_reads_the_peak_and_counts_the_cache_as_available():
    cuda = FakeTorchCuda()
    probe = TorchCudaProbe("cuda:1", SimpleNamespace(cuda=cuda))
    assert isinstance(probe, MemoryProbe) and probe.device == "cuda:1"
    with probe.measure() as measured:
        cuda.run_batch(4000)
    assert cuda.calls[0] == ("init",)  # statistics exist only after CUDA is initialised
    assert ("empty_cache",) in cuda.calls and ("reset_peak_memory_stats", 1) in cuda.calls
    assert ("max_memory_reserved", 1) in cuda.calls
    assert measured.before_bytes == 1000 and measured.peak_bytes == 5000 and measured.added_bytes == 4000
    assert probe.current_bytes() == 1000  # the cached 4000 are not counted as held ...
    assert probe.available_bytes() == 10_000 + 4000  # ... but as available
    assert ("mem_get_info", 1) in cuda.calls
    probe.reset_peak()
    assert probe.peak_bytes() == 1000


def test_between_batches_torch_cache_goes_back_to_the_device():
    """MemoryPlanner.after_batch on a GPU empties torch's cache, as the profile does before
    each measured batch: the next batch then peaks where the profile said it would."""
    from tingxie.memory.planning import MemoryPlanner
    from tingxie.planner import MemoryModel

    cuda = FakeTorchCuda()
    planner = MemoryPlanner(MemoryModel(0.0, 1.0, 0.0), TorchCudaProbe("cuda", SimpleNamespace(cuda=cuda)), 50_000)
    cuda.run_batch(4000)
    assert cuda.reserved == 5000
    planner.after_batch()
    assert cuda.calls[-1] == ("empty_cache",) and cuda.reserved == cuda.allocated


class FakeNvml:
    class NVMLError(Exception):
        pass

    def __init__(self, fail_init: bool = False):
        self.used, self.total, self.fail_init, self.index = 2000, 100_000, fail_init, None

    def nvmlInit(self):
        if self.fail_init:
            raise self.NVMLError("driver not loaded")

    def nvmlDeviceGetHandleByIndex(self, index):
        self.index = index
        return "handle"

    def nvmlDeviceGetMemoryInfo(self, handle):
        assert handle == "handle"
        return SimpleNamespace(used=self.used, free=self.total - self.used, total=self.total)


def test_nvml_probe_samples_the_peak_of_a_region():
    nvml = FakeNvml()
    probe = NvmlCudaProbe("cuda:2", nvml, sample_interval_s=0.001)
    assert nvml.index == 2 and isinstance(probe, MemoryProbe)
    with probe.measure() as measured:
        nvml.used = 9000  # a batch's working memory, briefly
        time.sleep(0.05)
        nvml.used = 3000
    assert measured.before_bytes == 2000 and measured.peak_bytes == 9000
    assert probe.current_bytes() == 3000 and probe.available_bytes() == 97_000
    probe.reset_peak()
    assert probe.peak_bytes() == 3000


def test_probe_for_chooses_per_device_and_engine(monkeypatch):
    assert isinstance(probe_for("cpu"), CpuProbe)
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml())
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=FakeTorchCuda()))
    assert isinstance(probe_for("cuda"), NvmlCudaProbe)  # CTranslate2 hides its allocator
    torch_probe = probe_for("cuda:0", engine="torch")
    assert isinstance(torch_probe, TorchCudaProbe) and torch_probe.device == "cuda:0"


def test_paraformer_on_cuda_plans_with_the_torch_allocator_probe(monkeypatch, tmp_path):
    """memory_planning picks the probe by the backend's engine: torch's peak for Paraformer."""
    import funasr  # noqa: F401  (the funasr extra is part of the test install)
    from tingxie.memory import planning as memory_planning
    from tingxie.backends.paraformer.backend import ParaformerBackend  # imports the real torch first
    from tingxie.options import BatchOptions, TranscribeOptions

    cuda = FakeTorchCuda()
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml())
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    backend = object.__new__(ParaformerBackend)  # its class, without loading a model
    (tmp_path / "model.pt").write_bytes(b"0")
    backend.device, backend.model_path, backend.name = "cuda:0", tmp_path, "paraformer"
    backend.compute_type, backend.threads, backend.onnx = "float32", 1, None
    seen = []
    monkeypatch.setattr(memory_planning, "cached_model", lambda b, probe, key: seen.append(probe) or "model")
    planner = memory_planning.MemoryPlanner.profiled(backend, TranscribeOptions(batch=BatchOptions()), in_child=False)
    assert isinstance(planner.probe, TorchCudaProbe) and seen == [planner.probe]
    assert planner.probe.device == "cuda:0" and ("mem_get_info", 0) in cuda.calls  # the budget asked torch
    from tingxie.backends.whisper.backend import WhisperBackend

    whisper = object.__new__(WhisperBackend)
    whisper.device = "cuda:0"
    assert isinstance(whisper.memory_probe(), NvmlCudaProbe)  # the base class's default: CTranslate2's


def test_probe_for_explains_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # None in sys.modules: the import fails
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(TingxieError, match="nvidia-ml-py"):
        probe_for("cuda")
    with pytest.raises(TingxieError, match="torch"):
        probe_for("cuda", engine="torch")
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(fail_init=True))
    with pytest.raises(TingxieError, match="driver not loaded"):
        probe_for("cuda:0")
    with pytest.raises(TingxieError, match="not a CUDA device"):
        probe_for("tpu")
    with pytest.raises(TingxieError, match="not a CUDA device"):
        probe_for("cuda:x")


def test_importing_the_memory_package_imports_no_gpu_library():
    code = "import sys, tingxie.memory; print('torch' in sys.modules, 'pynvml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
