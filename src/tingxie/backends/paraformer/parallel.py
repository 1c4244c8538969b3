"""Independent pieces of a CPU batch run side by side, one intra-op thread each.

A Paraformer segment is thousands of ops (layer norms, softmax, masking, the FSMN convolutions
of 50 SANM layers), each split over the intra-op threads with a barrier at its end. Two segments
side by side on one thread each need no barriers: on a quiet 2-core machine about 4 % faster than
one after another on both threads, and several times faster when other work takes cores, where
every barrier waits for a descheduled peer (docs/benchmarks.md). A long item beside a short one
leaves a core idle, so the items that run side by side are planned (plan_side_by_side). torch
releases the GIL inside its ops, so Python threads are enough.

torch.set_num_threads is process-wide (MKL's global count, and the value each new thread's
OpenMP count is initialised from when it first runs an op), so it is set to 1 before the
workers start and restored only after the last one has finished. The workers are new threads on
every call, so none keeps a count from an earlier call. Grad mode, inference mode and autocast
are per thread: each worker enters the caller's inference/grad mode itself; autocast (a
precision context) must be entered by the function it runs.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence, TypeVar

import torch

Item = TypeVar("Item")
Result = TypeVar("Result")


@contextlib.contextmanager
def single_threaded_ops() -> Iterator[None]:
    """torch's intra-op thread count at 1 inside; the caller's count back afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# Two intra-op threads on one item did 0.955 of the work of two items side by side on one
# thread each (Paraformer-large's encoder, two 29 s segments, a quiet 2-core machine).
SHARED_EFFICIENCY = 0.955


def plan_side_by_side(costs: Sequence[float], workers: int) -> int:
    """How many of the costliest items to run side by side; the rest run one after another on all threads.

    A long item beside a short one leaves a core idle once the short one is done, so side by
    side is not always faster. Side by side, the n costliest items take as long as their
    longest-first schedule on `workers` threads; on all threads, items take their cost over
    workers x SHARED_EFFICIENCY. The n with the least estimated time wins (0: none).
    """
    if workers < 2:
        return 0
    ordered = sorted(costs, reverse=True)
    shared = workers * SHARED_EFFICIENCY
    best, best_time = 0, sum(ordered) / shared
    for n in range(2, len(ordered) + 1):
        finish = [0.0] * min(workers, n)
        for cost in ordered[:n]:  # each item to the worker that frees up first
            finish[finish.index(min(finish))] += cost
        estimate = max(finish) + sum(ordered[n:]) / shared
        if estimate < best_time:
            best, best_time = n, estimate
    return best


def map_side_by_side(fn: Callable[[Item], Result], items: Sequence[Item], workers: int,
                     cost: Callable[[Item], float], *, plan: bool = True) -> list[Result]:
    """[fn(item) for item in items]: the costliest ones on up to `workers` threads of one intra-op
    thread each (longest first), where plan_side_by_side expects that to be faster; the others
    one after another on the caller's threads. With one worker, the plain loop. plan False:
    every item side by side, for an fn that runs on one thread whatever the caller has (a
    single-threaded ONNX Runtime session), where no item would run faster on all threads.
    """
    order = sorted(range(len(items)), key=lambda i: -cost(items[i]))
    if plan:
        n = plan_side_by_side([cost(item) for item in items], workers)
    else:
        n = len(items) if workers > 1 and len(items) > 1 else 0
    results: list = [None] * len(items)
    for i in order[n:]:
        results[i] = fn(items[i])
    if n == 0:
        return results
    inference = torch.is_inference_mode_enabled()
    grad = torch.is_grad_enabled()

    def run(item: Item) -> Result:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return fn(item)

    # the pool's exit waits for every worker, before the thread count is restored
    with single_threaded_ops(), ThreadPoolExecutor(min(workers, n), "tingxie-item") as pool:
        futures = [(i, pool.submit(run, items[i])) for i in order[:n]]
        try:
            for i, future in futures:
                results[i] = future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return results
