"""Independent pieces of a CPU batch run side by side, one intra-op thread each.

A Paraformer segment is thousands of small ops (layer norms, softmax, masking, the FSMN
convolutions of 50 SANM layers) that gain little from a second intra-op thread: run two
segments at once on one thread each instead, and both cores stay busy. torch releases the GIL
inside its ops, so Python threads are enough.

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


def map_side_by_side(fn: Callable[[Item], Result], items: Sequence[Item], workers: int,
                     cost: Callable[[Item], float] | None = None) -> list[Result]:
    """[fn(item) for item in items], on up to `workers` threads of one intra-op thread each.

    The costliest items start first (cost), so the workers finish close together. With one
    worker or one item this is the plain loop on the caller's threads.
    """
    if workers < 2 or len(items) < 2:
        return [fn(item) for item in items]
    inference = torch.is_inference_mode_enabled()
    grad = torch.is_grad_enabled()

    def run(item: Item) -> Result:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return fn(item)

    order = sorted(range(len(items)), key=lambda i: -cost(items[i])) if cost else range(len(items))
    results: list = [None] * len(items)
    # the pool's exit waits for every worker, before the thread count is restored
    with single_threaded_ops(), ThreadPoolExecutor(min(workers, len(items)), "tingxie-item") as pool:
        futures = [(i, pool.submit(run, items[i])) for i in order]
        try:
            for i, future in futures:
                results[i] = future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return results
