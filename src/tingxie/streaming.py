"""The streamed engine: audio chunks in, recognised segments out in time order, in bounded memory.

decode chunks -> VAD (state carried across chunks) -> segments cut from a rolling buffer ->
a window of pending segments is planned and executed -> results released in time order.
Windows are fixed runs of segment indices, so the batches of a window are the same in every
run of the same input: a resumed run recomputes exactly what an uninterrupted one did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from . import SAMPLE_RATE
from .audio_buffer import RollingAudio
from .backends.base import Backend
from .batching import plan_for
from .executor import Executor
from .errors import OutOfMemoryError
from .options import BatchOptions
from .planner import MemoryModel
from .segments import AudioSegment, SegmentResult, SpeechSpan
from .shapes import InputShape, ShapeRule
from .vad import SpeechDetector

_EMPTY = np.zeros(0, np.float32)


@dataclass(frozen=True)
class WindowDone:
    """A window of segments finished: its results in time order (for checkpoints and output)."""

    number: int
    results: tuple[SegmentResult, ...]
    audio_done_s: float  # end of the window's last segment


@dataclass
class StreamState:
    """What the stream has seen so far, for progress and the final figures."""

    audio_s: float = 0.0
    segments: int = 0
    peak_held_samples: int = 0


def window_size(shape: InputShape, capacity: int) -> int:
    """Segments per window, given the largest batch the budget allows. Fixed windows gain
    nothing from sorting, so one full batch; variable lengths get a few batches' worth, so
    sorting by length inside the window keeps padding low. Small windows checkpoint often
    and hold little audio."""
    return capacity if shape.rule is ShapeRule.FIXED_WINDOW else 4 * capacity


def batch_capacity(shape: InputShape, options: BatchOptions, memory_model, budget) -> int:
    """The most items of the longest length one batch may hold under the budget."""
    longest = [AudioSegment(i, 0.0, shape.max_item_s, _EMPTY) for i in range(options.max_batch_size)]
    try:
        plan = plan_for(longest, shape, options, memory_model=memory_model, working_budget_bytes=budget)
    except OutOfMemoryError:
        return 1  # shorter items may still fit; the planner says so per window
    return max(len(batch.item_ids) for batch in plan.batches)


def speech_segments(chunks: Iterable[np.ndarray], detector: SpeechDetector, state: StreamState) -> Iterator[AudioSegment]:
    """Segments with their audio, as soon as the VAD closes each, holding only what is needed."""
    buffer = RollingAudio()
    index = 0

    def cut(spans: list[SpeechSpan]) -> Iterator[AudioSegment]:
        nonlocal index
        for span in spans:
            yield AudioSegment(index, span.start, span.end, buffer.cut(span.start, span.end))
            index += 1

    for chunk in chunks:
        buffer.append(chunk)
        state.audio_s = buffer.end_sample / SAMPLE_RATE
        state.peak_held_samples = max(state.peak_held_samples, buffer.held_samples)
        yield from cut(detector.push(chunk))
        buffer.drop_before(detector.earliest_start_s())
    yield from cut(detector.finish())
    state.segments = index


def run_windows(
    segments: Iterable[AudioSegment],
    backend: Backend,
    executor: Executor,
    options: BatchOptions,
    *,
    memory_model: MemoryModel | None = None,
    working_budget_bytes: int | None = None,
    done: Callable[[int], tuple[SegmentResult, ...] | None] = lambda number: None,
) -> Iterator[WindowDone]:
    """Plan and run one window of segments at a time; `done(n)` gives a finished window's
    results from a checkpoint, which are then not recomputed."""
    # FunASR's grouping sorts a whole recording's segments: exact FunASR batches need them all.
    size = None
    if options.batch_size_s is None:
        size = window_size(backend.shape, batch_capacity(backend.shape, options, memory_model, working_budget_bytes))
    window: list[AudioSegment] = []
    number = 0
    for segment in segments:
        window.append(segment)
        if size is not None and len(window) == size:
            yield _run_window(number, window, backend, executor, options, memory_model, working_budget_bytes, done)
            window, number = [], number + 1
    if window:
        yield _run_window(number, window, backend, executor, options, memory_model, working_budget_bytes, done)


def _run_window(number, window, backend, executor, options, memory_model, budget, done) -> WindowDone:
    recorded = done(number)
    if recorded is not None:
        return WindowDone(number, recorded, window[-1].end)
    by_index = {segment.index: segment for segment in window}
    plan = plan_for(window, backend.shape, options, memory_model=memory_model,
                    working_budget_bytes=budget, ceiling=executor.ceiling)
    results: dict[int, SegmentResult] = {}
    for planned in plan.batches:
        for result in executor.run([by_index[i] for i in planned.item_ids]):
            results[result.index] = result
    return WindowDone(number, tuple(results[i] for i in sorted(results)), window[-1].end)
