"""Which queued segments go next: least attained service, counted in quanta.

Every work (request or job) has received some compute: the padded seconds its segments took
in batches. Works are ranked by how many whole quanta of it they have had, then by arrival.
So a 10-second request arriving behind a 3-hour job is served at once (the job has had many
quanta, the request none), a long job cannot starve short ones, and long jobs share the
backend in quantum-sized turns; works of less than a quantum run in arrival order, which
keeps latency low where plain round robin would make equal requests all finish last.
Pure policy: no threads, no backend, so it is tested alone.
"""

from __future__ import annotations

import heapq
from typing import Callable, Protocol, Sequence


class Lane(Protocol):
    served_s: float
    seq: int
    pending: Sequence


def fair_order(lanes: Sequence[Lane], cost: Callable[[object], float], limit: int,
               quantum_s: float) -> list[tuple[Lane, object]]:
    """Up to `limit` (lane, item) pairs, each lane's items in its own order. Taking an item
    adds its cost to its lane's service before the next pick; quantum_s 0 ranks by service
    itself (pure least attained service, round robin among equals)."""

    def rank(served: float) -> float:
        return served // quantum_s if quantum_s > 0 else served

    heap = [(rank(lane.served_s), lane.seq, lane.served_s, position, 0)
            for position, lane in enumerate(lanes) if lane.pending]
    heapq.heapify(heap)
    picked: list[tuple[Lane, object]] = []
    while heap and len(picked) < limit:
        _, seq, served, position, taken = heapq.heappop(heap)
        lane = lanes[position]
        item = lane.pending[taken]
        picked.append((lane, item))
        if taken + 1 < len(lane.pending):
            served += cost(item)
            heapq.heappush(heap, (rank(served), seq, served, position, taken + 1))
    return picked


def admitted_lanes(lanes: Sequence[Lane], max_active: int) -> list[Lane]:
    """The lanes that may be batched now: all of them, or the first max_active by arrival
    (1 serves requests one at a time, as a server without cross-request batching would)."""
    if max_active <= 0:
        return list(lanes)
    return sorted(lanes, key=lambda lane: lane.seq)[:max_active]
