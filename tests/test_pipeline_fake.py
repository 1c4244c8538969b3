"""The pipeline and executor around a fake backend: ordering, batching, and OOM recovery."""

import numpy as np
import pytest

from tingxie.backends.fake import FakeBackend, describe_segment
from tingxie.errors import OutOfMemoryError
from tingxie.engine.executor import Executor
from tingxie.options import BatchOptions, TranscribeOptions
from tingxie.engine.pipeline import Transcriber
from tingxie.segments import AudioSegment
from tingxie.planner.shapes import InputShape, ShapeRule


def segments(durations):
    out, start = [], 0.0
    for index, duration in enumerate(durations):
        out.append(AudioSegment(index, start, start + duration, np.zeros(int(duration * 16000), np.float32)))
        start += duration + 1.0
    return out


def test_executor_splits_a_batch_that_runs_out_of_memory_and_keeps_every_segment():
    backend = FakeBackend(shape=InputShape(ShapeRule.FIXED_WINDOW, 30.0), oom_above_cost_s=60.0)
    executor = Executor(backend)
    batch = segments([5.0] * 8)
    results = executor.run(batch)
    assert [r.index for r in results] == list(range(8))
    assert [r.pieces[0].text for r in results] == [describe_segment(s) for s in batch]
    assert all(len(b) <= 2 for b in backend.batches)
    assert sorted(i for b in backend.batches for i in b) == list(range(8))
    assert executor.oom_retries == 2  # 8 -> 4 + 4, 4 -> 2 + 2; the ceiling then pre-splits
    assert executor.ceiling == 2


def test_the_lowered_ceiling_applies_to_later_batches():
    backend = FakeBackend(shape=InputShape(ShapeRule.FIXED_WINDOW, 30.0), oom_above_cost_s=120.0)
    executor = Executor(backend)
    all_segments = segments([3.0] * 16)
    executor.run(all_segments[:8])
    retries = executor.oom_retries
    executor.run(all_segments[8:])
    assert executor.oom_retries == retries  # no new failure: the second batch was pre-split
    assert max(len(b) for b in backend.batches) == 4


def test_a_single_segment_that_does_not_fit_is_a_clear_error():
    backend = FakeBackend(oom_above_cost_s=10.0)
    with pytest.raises(OutOfMemoryError, match="single 12.0 s segment"):
        Executor(backend).run(segments([12.0]))



def test_pipeline_with_fake_backend_returns_segments_in_time_order(data_dir):
    backend = FakeBackend(shape=InputShape(ShapeRule.FIXED_WINDOW, 30.0))
    options = TranscribeOptions(batch=BatchOptions(max_batch_size=2))
    transcript = Transcriber(options, backend=backend).transcribe(str(data_dir / "jfk.flac"))
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts) and transcript.segments
    assert all(len(b) <= 2 for b in backend.batches)
    assert transcript.stats.segments == len(transcript.segments)
    assert transcript.model == "fake"


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(durations=st.lists(st.floats(0.5, 30.0), min_size=1, max_size=40),
       batch_size=st.integers(1, 16), oom_items=st.integers(1, 16))
def test_no_segment_is_ever_dropped_or_duplicated_whatever_fails(durations, batch_size, oom_items):
    backend = FakeBackend(shape=InputShape(ShapeRule.FIXED_WINDOW, 30.0), oom_above_cost_s=30.0 * oom_items)
    executor = Executor(backend)
    all_segments = segments(durations)
    results = []
    for start in range(0, len(all_segments), batch_size):
        results += executor.run(all_segments[start:start + batch_size])
    assert [r.index for r in results] == list(range(len(durations)))
    assert sorted(i for b in backend.batches for i in b) == list(range(len(durations)))
    assert max(len(b) for b in backend.batches) <= oom_items


def test_packed_windows_map_times_back_to_the_file():
    from tingxie.engine.packing import pack_windows

    spans = [AudioSegment(i, start, start + length, np.full(int(length * 16000), i, np.float32))
             for i, (start, length) in enumerate([(1.0, 10.0), (15.0, 12.0), (40.0, 9.0), (50.0, 2.0)])]
    windows = list(pack_windows(spans, 30.0))
    assert [w.parts for w in windows] == [((0.0, 1.0, 10.0), (10.0, 15.0, 12.0)), ((0.0, 40.0, 9.0), (9.0, 50.0, 2.0))]
    first = windows[0]
    assert (first.index, first.start, first.end, first.duration) == (0, 1.0, 27.0, 22.0)
    assert first.absolute(0.0) == 1.0 and first.absolute(9.5) == 10.5
    assert first.absolute(10.0) == 15.0 and first.absolute(21.0) == 26.0
    assert np.array_equal(first.samples[: 10 * 16000], spans[0].samples)
    assert windows[1].index == 1 and windows[1].absolute(10.0) == 51.0


def test_packed_parts_are_measured_in_samples_held():
    """A span's times may be rounded (VAD frames, ms) while its samples are exact: each part's
    length is what it holds, so one part ends exactly where the next begins in the window."""
    from tingxie.engine.packing import pack_windows

    spans = [AudioSegment(0, 1.0, 11.0003, np.zeros(160000, np.float32)),
             AudioSegment(1, 12.0, 13.4999, np.zeros(24000, np.float32))]
    (window,) = pack_windows(spans, 30.0)
    assert window.parts == ((0.0, 1.0, 10.0), (10.0, 12.0, 1.5))
    assert all(a[0] + a[2] == b[0] for a, b in zip(window.parts, window.parts[1:]))


def test_the_ceiling_relaxes_after_a_run_of_successful_batches():
    """A transient out-of-memory error lowers the ceiling; once memory is back, batches grow again."""
    backend = FakeBackend(shape=InputShape(ShapeRule.FIXED_WINDOW, 30.0), oom_above_cost_s=60.0)
    executor = Executor(backend, relax_after=6)
    pool = segments([3.0] * 8)
    executor.run(pool)  # 8 -> 4 + 4 -> four batches of two, each a success under the ceiling
    assert executor.ceiling == 2 and executor.successes_under_ceiling == 4
    backend.oom_above_cost_s = None  # the pressure passed
    for _ in range(2):  # six successes in all: the ceiling doubles
        executor.run(pool[:2])
    assert executor.ceiling == 4 and executor.ceiling_raises == 1
    for _ in range(6):
        executor.run(pool[:4])
    assert executor.ceiling == 8
    backend.batches.clear()
    executor.run(pool)
    assert backend.batches == [tuple(range(8))]  # a full batch again, in one call
    # and a new failure lowers it again
    retries = executor.oom_retries
    backend.oom_above_cost_s = 60.0
    executor.run(pool)
    assert executor.oom_retries == retries + 2 and executor.ceiling is not None and executor.ceiling <= 4
