"""Grouping segments into batches. Pure Python: no numpy, torch or backend imports, so plans can
be made, tested and printed without any model installed.

Two modes: plan_funasr reproduces FunASR's `batch_size_s` grouping; plan_budgeted (the default)
sizes batches to a memory budget with a fitted MemoryModel.
"""

from tingxie.planner.budgeted import plan_budgeted
from tingxie.planner.constraint import (
    DEFAULT_MAX_PADDING_WASTE,
    UNMEASURED,
    BatchConstraint,
    BudgetConstraint,
    FunasrConstraint,
    longest_prefix,
)
from tingxie.planner.funasr_compat import FUNASR_DEFAULT_THRESHOLD_S, plan_funasr
from tingxie.planner.memory_model import MemoryModel, ProfileSample, fit_memory_model, format_bytes, min_budget
from tingxie.planner.plan import Batch, PaddingTally, Plan, PlanItem, padding_waste

__all__ = [
    "DEFAULT_MAX_PADDING_WASTE",
    "FUNASR_DEFAULT_THRESHOLD_S",
    "Batch",
    "BatchConstraint",
    "BudgetConstraint",
    "FunasrConstraint",
    "UNMEASURED",
    "longest_prefix",
    "MemoryModel",
    "PaddingTally",
    "Plan",
    "PlanItem",
    "ProfileSample",
    "fit_memory_model",
    "format_bytes",
    "min_budget",
    "padding_waste",
    "plan_budgeted",
    "plan_funasr",
]
