"""Choose the batches for a list of segments: the bridge from the pipeline to the planner.

With a number for batch_size_s, FunASR's grouping; otherwise ('auto') batches sized to the
memory budget by the profiled memory model. Without a model (a backend that was not profiled)
every batch costs nothing and only max_batch_size bounds it.
"""

from __future__ import annotations

from typing import Sequence

from tingxie.options import BatchOptions
from tingxie.planner import (
    UNMEASURED,
    BatchConstraint,
    BudgetConstraint,
    FunasrConstraint,
    MemoryModel,
    Plan,
    PlanItem,
    plan_budgeted,
    plan_funasr,
)
from tingxie.segments import AudioSegment
from tingxie.planner.shapes import InputShape


def plan_for(
    segments: Sequence[AudioSegment],
    shape: InputShape,
    options: BatchOptions,
    *,
    memory_model: MemoryModel | None = None,
    working_budget_bytes: int | None = None,
    ceiling: int | None = None,
) -> Plan:
    items = [PlanItem(s.index, s.duration) for s in segments]
    if options.batch_size_s is not None:
        return plan_funasr(items, options.batch_size_s, options.batch_threshold_s, shape)
    model, budget, max_batch = _budgeted(options, memory_model, working_budget_bytes, ceiling)
    return plan_budgeted(items, shape, model, budget, max_batch)


def _budgeted(options: BatchOptions, memory_model: MemoryModel | None, working_budget_bytes: int | None,
              ceiling: int | None) -> tuple[MemoryModel, int, int]:
    """(memory model, budget, batch cap) of budgeted batching: without a measured model every batch
    costs nothing and only the cap (lowered by the executor's ceiling) bounds it."""
    limit = options.batch_cap()
    max_batch = min(limit, ceiling or limit)
    if memory_model is None or working_budget_bytes is None:
        return UNMEASURED, 1, max_batch
    return memory_model, max(1, working_budget_bytes), max_batch


def constraint_for(
    shape: InputShape,
    options: BatchOptions,
    *,
    memory_model: MemoryModel | None = None,
    working_budget_bytes: int | None = None,
    ceiling: int | None = None,
) -> BatchConstraint:
    """The rule one batch must keep under these options, for callers that grow batches
    themselves (the server) or size windows (streaming): the same rule plan_for plans with."""
    if options.batch_size_s is not None:
        limit = options.batch_cap()
        return FunasrConstraint(shape, options.batch_size_s, options.batch_threshold_s, min(limit, ceiling or limit))
    return BudgetConstraint(shape, *_budgeted(options, memory_model, working_budget_bytes, ceiling))
