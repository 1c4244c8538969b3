"""Child process entry point: load one case, transcribe once, write the figures as JSON.

    python -m tingxie.benchmark.case SPEC_JSON RESULT_PATH [--prepare]

--prepare loads the case and stops: it fills whatever the first use of a case fills once
(tingxie's on-disk memory profile, the OS page cache of the model) outside the measured runs.
Wall time covers the transcription only; model load is timed apart. The result goes to a file,
not stdout, so whatever the libraries print cannot corrupt it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

from tingxie.errors import TingxieError
from tingxie.benchmark.cases import CaseOutput, CaseSpec, load
from tingxie.memory.resources import proc_status_kib


def _vm_hwm_bytes() -> int | None:
    """This process's own resident high-water mark since exec (a cross-check of the parent's figure)."""
    kib = proc_status_kib("self", "VmHWM")
    return None if kib is None else kib * 1024


class _GpuPeak:
    """The run's peak GPU memory as torch's caching allocator saw it (reserved and allocated
    bytes; the CUDA context is not in them). tingxie's CUDA backends and FunASR both allocate
    through it; a GPU has no per-process high-water mark to read from outside."""

    def __init__(self):
        import torch

        self.torch = torch
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    def read(self) -> dict:
        self.torch.cuda.synchronize()
        return {"gpu_peak_reserved_bytes": self.torch.cuda.max_memory_reserved(),
                "gpu_peak_allocated_bytes": self.torch.cuda.max_memory_allocated()}


def main(argv: list[str]) -> int:
    prepare = argv[2:] == ["--prepare"]
    if len(argv) != 2 and not prepare:
        print("usage: python -m tingxie.benchmark.case SPEC_JSON RESULT_PATH [--prepare]", file=sys.stderr)
        return 2
    spec = CaseSpec.from_json(argv[0])
    started = time.perf_counter()
    try:
        run = load(spec)
        gpu = _GpuPeak() if spec.device == "cuda" else None
        loaded, cpu_loaded = time.perf_counter(), time.process_time()
        output = CaseOutput("", 0.0) if prepare else run()
        run_cpu_s = time.process_time() - cpu_loaded
        if gpu is not None:
            output.extra.update(gpu.read())
    except TingxieError as error:  # the user's to act on (a budget too small, no such model): one line
        with open(argv[1], "w", encoding="utf-8") as out:
            json.dump({"error": str(error)}, out, ensure_ascii=False)
        return 2
    finished = time.perf_counter()
    output.extra["package_dir"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # which tingxie ran
    record = dataclasses.asdict(output) | {
        "load_s": loaded - started,
        "wall_s": finished - loaded,
        # every thread's CPU seconds in the transcription (spinning and barrier waits count too)
        "run_cpu_s": run_cpu_s,
        "self_hwm_bytes": _vm_hwm_bytes(),
    }
    with open(argv[1], "w", encoding="utf-8") as out:
        json.dump(record, out, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
