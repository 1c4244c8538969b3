"""The memory side of planning for one loaded backend: its measured model and the budget."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from . import __version__
from .memory import MemoryProbe, default_budget, load_or_profile, model_file_key, probe_for, working_budget
from .options import TranscribeOptions
from .planner import MemoryModel, format_bytes
from .sizes import parse_memory_budget

log = logging.getLogger(__name__)


@dataclass
class MemoryPlanner:
    model: MemoryModel
    probe: MemoryProbe
    total_budget_bytes: int

    @classmethod
    def profiled(cls, backend, options: TranscribeOptions) -> "MemoryPlanner | None":
        """Profile (or load the cached profile of) a real backend; None for one with no weights."""
        model_path = getattr(backend, "model_path", None)
        if model_path is None:
            return None
        probe = probe_for(getattr(backend, "device", "cpu"))
        key = {
            **model_file_key(model_path),
            "device": getattr(backend, "device", "cpu"),
            "compute_type": getattr(backend, "compute_type", None),
            "beam_size": options.decode.beam_size,
            "threads": getattr(backend, "threads", None),
            "tingxie": __version__,
        }
        model = load_or_profile(backend, probe, key)
        if options.batch.memory_budget is None:
            total = default_budget(probe)
        else:
            total = parse_memory_budget(options.batch.memory_budget, probe.current_bytes() + probe.available_bytes())
        log.info("memory budget %s on %s", format_bytes(total), probe.device)
        return cls(model, probe, total)

    def working_budget(self) -> int:
        """What batches may add now: the budget less what is already resident."""
        return working_budget(self.total_budget_bytes, self.probe)
