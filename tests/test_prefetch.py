"""The background producer: order kept, errors raised where they happen, bounded, stoppable."""

import threading
import time

import pytest

from tingxie.engine.prefetch import prefetched


def test_items_come_in_order():
    assert list(prefetched(range(100), depth=3)) == list(range(100))


def test_an_error_is_raised_after_the_items_before_it():
    def source():
        yield 1
        yield 2
        raise ValueError("corrupt frame")

    got = []
    with pytest.raises(ValueError, match="corrupt frame"):
        for item in prefetched(source(), depth=2):
            got.append(item)
    assert got == [1, 2]


def test_the_producer_runs_at_most_depth_ahead():
    made = []

    def source():
        for i in range(50):
            made.append(i)
            yield i

    stream = prefetched(source(), depth=2)
    assert next(stream) == 0
    time.sleep(0.3)  # give the producer every chance to run ahead
    # one taken, two queued, one made and waiting for room
    assert len(made) <= 1 + 2 + 1
    stream.close()


def test_closing_early_stops_the_producer_and_closes_its_source():
    closed = threading.Event()

    def source():
        try:
            for i in range(10_000):
                yield i
        finally:
            closed.set()

    stream = prefetched(source(), depth=2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    assert closed.wait(2.0)
    assert not [t for t in threading.enumerate() if t.name == "tingxie-prefetch"]


def test_depth_must_be_positive():
    with pytest.raises(ValueError):
        list(prefetched([1], depth=0))
