"""FunASR's batching, reproduced so `--batch-size-s N` groups segments as FunASR would.

Source read: modelscope/FunASR, funasr/auto/auto_model.py, AutoModel.inference_with_vad
(tag v1.4.3, commit eedd4e22d10dc2e81d9c2bb321edb3750253964b; the loop is the same in v1.4.0
and on master 3c58cb56). Written from that reading, not copied.
"""

from __future__ import annotations

import math
from typing import Iterable

from tingxie.planner.shapes import InputShape
from tingxie.planner.plan import Batch, Plan, PlanItem, check_unique_ids

FUNASR_DEFAULT_THRESHOLD_S = 60  # FunASR's default for batch_size_threshold_s


def plan_funasr(
    items: Iterable[PlanItem],
    batch_size_s: float,
    batch_threshold_s: float | None,
    shape: InputShape,
) -> Plan:
    """Group items exactly as FunASR's inference_with_vad does for one recording.

    FunASR works on whole milliseconds, so each duration is rounded to the nearest ms first.
    Then, as FunASR does:

    * The budget is ``max(int(batch_size_s) * 1000, 1)`` ms (the seconds are truncated to a
      whole number first, so 0.5 s means a 1 ms budget), raised to the length of the shortest
      segment. The threshold is ``int(batch_threshold_s) * 1000`` ms, 60 s when None.
    * Segments are sorted by length, ascending, with Python's stable sort: equal lengths keep
      their input order.
    * Walking the sorted list, segment j joins the open batch while all of these hold: it is
      not the last segment, it is shorter than the threshold, and (longest length in the batch
      including j) * (batch size including j) is below the budget. Otherwise the open batch is
      closed *with segment j in it*. So a batch may overshoot the budget by its last segment,
      and the first segment at or over the threshold closes the batch of shorter ones it
      joins; every later segment (all at least as long) then runs alone.
    * The last segment always closes the batch it joins.

    Not reproduced: on device "cpu" FunASR sets the budget to 0, so every segment runs alone;
    and with more than ``batch_size_s * 1000`` zero-length segments in one batch FunASR's inner
    ``inference`` would split it by count. Batches come out in FunASR's order (shortest first).
    """
    items = check_unique_ids(items)
    threshold_s = FUNASR_DEFAULT_THRESHOLD_S if batch_threshold_s is None else batch_threshold_s
    lengths_ms = [round(item.duration * 1000) for item in items]
    order = sorted(range(len(items)), key=lambda i: lengths_ms[i])  # stable: ties keep input order
    speech_s = math.fsum(item.duration for item in items)  # exact, so independent of order
    if not order:
        return Plan(batches=(), mode="funasr", speech_s=speech_s)

    # FunASR raises the budget to the shortest length; that never changes a batch, kept to match.
    budget_ms = max(max(int(batch_size_s) * 1000, 1), lengths_ms[order[0]])
    threshold_ms = int(threshold_s) * 1000

    groups: list[list[int]] = []
    open_batch: list[int] = []
    longest_ms = 0
    for j, index in enumerate(order):
        length = lengths_ms[index]
        open_batch.append(index)
        is_last = j == len(order) - 1
        if not is_last and length < threshold_ms and max(longest_ms, length) * len(open_batch) < budget_ms:
            longest_ms = max(longest_ms, length)
            continue
        groups.append(open_batch)
        open_batch = []
        # FunASR carries the closing segment's length into the next batch; as the list is sorted
        # ascending the next segment is at least as long, so this never changes a decision.
        longest_ms = length

    batches = tuple(
        Batch(
            item_ids=tuple(items[i].id for i in group),
            padded_s=shape.padded_seconds([items[i].duration for i in group]),
        )
        for group in groups
    )
    return Plan(batches=batches, mode="funasr", speech_s=speech_s)
