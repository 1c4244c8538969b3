"""Run an iterator's producer in a background thread, a bounded number of items ahead.

Decoding and the VAD are single-threaded; run inline they leave a core idle while the model
waits for its next window. In a thread they overlap with the model's compute (CTranslate2
and torch release the GIL). The queue is bounded, so memory stays bounded: at most `depth`
items wait, plus the one being made.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_DONE = object()
_POLL_S = 0.1  # how often a blocked producer checks whether the consumer has gone


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetched(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield items in order, produced up to `depth` ahead in a daemon thread. An exception in
    the producer is raised here, at the point its item would have come; closing this generator
    early stops the producer."""
    if depth < 1:
        raise ValueError("depth must be at least 1")
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not offer(item):
                    break
            else:
                offer(_DONE)
        except BaseException as error:  # noqa: BLE001 - re-raised in the consumer
            offer(_Failure(error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None and stop.is_set():
                close()  # the consumer left early: let the producer's generator clean up

    worker = threading.Thread(target=produce, name="tingxie-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        # A producer blocked inside its source (a pipe with no data) cannot see the stop; it is
        # a daemon, so waiting a moment and leaving it is safe.
        worker.join(timeout=5.0)
