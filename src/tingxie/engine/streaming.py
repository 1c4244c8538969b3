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

from tingxie import SAMPLE_RATE
from tingxie.audio.buffer import RollingAudio
from tingxie.backends.base import Backend
from tingxie.engine.batching import constraint_for, plan_for
from tingxie.engine.executor import Executor
from tingxie.options import BatchOptions
from tingxie.planner import MemoryModel
from tingxie.segments import AudioSegment, SegmentResult, SpeechSpan, TextSegment
from tingxie.planner.shapes import InputShape, ShapeRule
from tingxie.vad.detector import SpeechDetector



@dataclass(frozen=True)
class WindowDone:
    """A window of segments finished: its results in time order (for checkpoints and output)."""

    number: int
    results: tuple[SegmentResult, ...]
    audio_done_s: float  # end of the window's last segment
    # the output text this window settled: its results' pieces, or where the whole recording's
    # text is punctuated (Paraformer), the sentences that closed with it
    pieces: tuple[TextSegment, ...] | None = None

    @property
    def output(self) -> tuple[TextSegment, ...]:
        if self.pieces is not None:
            return self.pieces
        return tuple(piece for result in self.results for piece in result.pieces)


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
    """The most items of the longest length one batch may hold under the budget (at least 1:
    shorter items may still fit where one long one does not; the planner says so per window)."""
    constraint = constraint_for(shape, options, memory_model=memory_model, working_budget_bytes=budget)
    return max(1, constraint.capacity(shape.max_item_s))


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
    working_budget: Callable[[], int] | None = None,
    recorded: Callable[[int], SegmentResult | None] = lambda index: None,
) -> Iterator[WindowDone]:
    """Plan and run one window of segments at a time, releasing results in time order.

    recorded(index) gives a segment's result from a checkpoint; such segments are passed
    through, not recomputed, whatever window they fall in. working_budget() is asked at each
    window: what batches may add is the budget less what is resident at that moment (audio
    buffers and allocator state move), and the window holds about as many segments as the
    batches that budget allows.
    """
    window: list[AudioSegment] = []
    to_compute = 0
    number = 0
    size = _next_window_size(backend, options, memory_model, working_budget)
    for segment in segments:
        window.append(segment)
        to_compute += recorded(segment.index) is None
        if size is not None and to_compute == size:
            yield _run_window(number, window, backend, executor, options, memory_model, working_budget, recorded)
            window, to_compute, number = [], 0, number + 1
            size = _next_window_size(backend, options, memory_model, working_budget)
    if window:
        yield _run_window(number, window, backend, executor, options, memory_model, working_budget, recorded)


def _next_window_size(backend, options, memory_model, working_budget) -> int | None:
    if options.batch_size_s is not None:
        return None  # FunASR's grouping sorts a whole recording's segments: exact batches need them all
    budget = working_budget() if working_budget else None
    return window_size(backend.shape, batch_capacity(backend.shape, options, memory_model, budget))


def _run_window(number, window, backend, executor, options, memory_model, working_budget, recorded) -> WindowDone:
    results = {s.index: recorded(s.index) for s in window if recorded(s.index) is not None}
    pending = [s for s in window if s.index not in results]
    if pending:
        by_index = {segment.index: segment for segment in pending}
        plan = plan_for(pending, backend.shape, options, memory_model=memory_model,
                        working_budget_bytes=working_budget() if working_budget else None,
                        ceiling=executor.ceiling)
        for planned in plan.batches:
            for result in executor.run([by_index[i] for i in planned.item_ids]):
                results[result.index] = result
    return WindowDone(number, tuple(results[i] for i in sorted(results)), window[-1].end)
