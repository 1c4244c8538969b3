"""How many bytes batches may use, from a total budget or from what the device has."""

from __future__ import annotations

from tingxie.errors import OutOfMemoryError
from tingxie.planner.memory_model import format_bytes
from tingxie.memory.probes import MemoryProbe

# Of what the process could reach (held now + still available), the default lets tingxie plan
# with 70 %. The rest covers what the fit cannot see: allocator caches that stay resident
# between batches (45-180 MiB measured with whisper-tiny.en on CPU, up to half of a 4-item
# batch's peak), audio decoding and result buffers, and, on CPU, the page cache and
# other processes, which MemAvailable only estimates. Running short is far worse than
# batching smaller: on CPU it swaps or meets the OOM killer, on GPU it splits batches. vLLM
# takes 90 % of a GPU it owns outright; a CPU is shared, so tingxie stays lower.
DEFAULT_BUDGET_FRACTION = 0.7


def default_budget(probe: MemoryProbe, fraction: float = DEFAULT_BUDGET_FRACTION) -> int:
    """The total budget (model included) when the user names none."""
    return default_total(probe.current_bytes(), probe.available_bytes(), fraction)


def default_total(held_bytes: int, available_bytes: int, fraction: float = DEFAULT_BUDGET_FRACTION) -> int:
    """The one rule for the default budget: a share of what the process could reach, what it
    holds now plus what is still available (a parent that holds no model: held 0)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], not {fraction}")
    return int(fraction * (held_bytes + available_bytes))


def working_budget(total_budget_bytes: int, probe: MemoryProbe) -> int:
    """What batches may add: the total budget less what is resident now (weights, runtime).

    Profiled peaks are measured on top of the resident model, so this is the number to plan
    with. Raises OutOfMemoryError when the model alone already fills the budget.
    """
    resident = probe.current_bytes()
    left = total_budget_bytes - resident
    if left <= 0:
        raise OutOfMemoryError(
            f"memory budget {format_bytes(total_budget_bytes)} leaves nothing for batches: "
            f"the loaded model and runtime already hold {format_bytes(resident)} on {probe.device}"
        )
    return left
