"""The budget follows the memory the device has now: batches shrink when another process takes
memory mid-run and grow again when it comes back; nothing is lost and the text is unchanged."""

from __future__ import annotations

import numpy as np

from scripted_memory import ScriptedProbe
from tingxie.backends.fake import FakeBackend
from tingxie.engine.pipeline import Transcriber
from tingxie.memory.planning import MemoryPlanner
from tingxie.options import BatchOptions, TranscribeOptions
from tingxie.planner import MemoryModel
from tingxie.planner.shapes import InputShape, ShapeRule
from tingxie.segments import AudioSegment

MiB = 1024**2
WINDOW = InputShape(ShapeRule.FIXED_WINDOW, 30.0)
MODEL = MemoryModel(fixed=0.0, per_item_s=1.0 * MiB, per_item_s2=0.0)  # a 30 s window: 30 MiB


class PressureBackend(FakeBackend):
    """Another process takes memory after some batches and frees it later (by batch number)."""

    def __init__(self, probe, schedule):
        super().__init__(shape=WINDOW)
        self.probe, self.schedule = probe, schedule

    def transcribe_batch(self, batch):
        results = super().transcribe_batch(batch)
        if len(self.batches) in self.schedule:
            self.probe.available = self.schedule[len(self.batches)]
        return results


def segments(count):
    return [AudioSegment(i, 10.0 * i, 10.0 * i + 5.0, np.zeros(5 * 16000, np.float32)) for i in range(count)]


def run(schedule):
    probe = ScriptedProbe(10 * 1024 * MiB)
    backend = PressureBackend(probe, schedule)
    memory = MemoryPlanner(MODEL, probe, total_budget_bytes=1024 * MiB, shape=WINDOW)
    transcriber = Transcriber(TranscribeOptions(batch=BatchOptions(max_batch_size=8)), backend=backend, memory=memory)
    transcript = transcriber.transcribe_segments(segments(60), total_s=600.0)
    return backend, transcript


def test_batches_shrink_while_memory_is_taken_and_grow_when_it_returns():
    # after batch 2 only 200 MiB is free (3 windows fit), after batch 5 only 50 MiB (one window:
    # the floor, which the user's 1 GiB still allows), after batch 12 it is all back
    backend, transcript = run({2: 200 * MiB, 5: 50 * MiB, 12: 10 * 1024 * MiB})
    sizes = [len(batch) for batch in backend.batches]
    assert sizes[:2] == [8, 8]
    assert max(sizes[2:5]) <= 3 and 1 in sizes  # shrunk, down to one window at a time
    assert sizes[-2] == 8  # grew back to the full batch
    assert sorted(i for batch in backend.batches for i in batch) == list(range(60))  # nothing lost or repeated
    assert transcript.stats.budget_shrinks == 1 and transcript.stats.lowest_batch_memory_bytes == 30 * MiB

    _, undisturbed = run({})
    assert transcript.text == undisturbed.text
    assert undisturbed.stats.budget_shrinks == 0


def test_an_explicit_budget_still_binds_when_memory_is_plentiful():
    probe = ScriptedProbe(10 * 1024 * MiB)
    memory = MemoryPlanner(MODEL, probe, total_budget_bytes=200 * MiB, shape=WINDOW)
    # 0.95 x 200 - 100 = 90 MiB: three windows, whatever is free
    assert memory.working_budget() == int(200 * MiB * 0.95) - 100 * MiB
    probe.available = 120 * MiB  # 0.7 x (100 + 120) x 0.95 - 100 = 46.3 MiB: less than the budget allows
    assert memory.working_budget() < 50 * MiB
    assert memory.trace.shrinks == 1


# --- the execution chosen under the budget --------------------------------------------------


class ReplicatedBackend(FakeBackend):
    """Stands for Whisper on a CPU: each replica holds 120 MiB; leaner options halve them."""

    def __init__(self, model):
        super().__init__(shape=WINDOW)
        self.model_options = model
        self.replicas = model.replicas or 2
        self.model_path = "weights"  # something to profile
        self.execution = f"{self.replicas} replicas"

    def leaner_options(self):
        import dataclasses

        return None if self.replicas == 1 else dataclasses.replace(self.model_options, replicas=self.replicas // 2)


class HeldProbe(ScriptedProbe):
    def __init__(self, held):
        super().__init__(10 * 1024 * MiB)
        self.held = held

    def current_bytes(self):
        return self.held


def _fitting(monkeypatch, budget_bytes):
    from tingxie.engine import pipeline

    loads = []

    def load(model, decode, memory_budget=None):
        loads.append(model.replicas)
        return ReplicatedBackend(model)

    def profiled(backend, options, **_):
        return MemoryPlanner(MODEL, HeldProbe(120 * MiB * backend.replicas), budget_bytes, given=f"{budget_bytes // MiB}MiB",
                             shape=backend.shape)

    monkeypatch.setattr(pipeline, "load_backend", load)
    monkeypatch.setattr(pipeline.MemoryPlanner, "profiled", staticmethod(profiled))
    return loads


def test_a_budget_the_default_execution_does_not_fit_runs_leaner(monkeypatch):
    loads = _fitting(monkeypatch, 250 * MiB)  # 2 replicas hold 240 MiB: no room for a window; 1 does
    transcriber = Transcriber(TranscribeOptions())
    assert loads == [0, 1] and transcriber.backend.replicas == 1
    assert transcriber.options.model.replicas == 1  # what runs, and what a profile child would load
    transcript = transcriber.transcribe_segments(segments(4), total_s=40.0)
    assert len(transcript.segments) == 4


def test_the_default_execution_is_kept_when_it_fits(monkeypatch):
    loads = _fitting(monkeypatch, 1024 * MiB)
    assert Transcriber(TranscribeOptions()).backend.replicas == 2 and loads == [0]


def test_below_the_leanest_execution_the_error_names_the_smallest_budget(monkeypatch):
    import pytest

    from tingxie.errors import OutOfMemoryError

    loads = _fitting(monkeypatch, 140 * MiB)  # even one replica (120 MiB) leaves less than a window
    with pytest.raises(OutOfMemoryError, match=r"^--memory-budget 140MiB \(140.0 MiB\) is below the smallest "
                                               r"batch: .* the smallest budget that works is 157.9 MiB"):
        Transcriber(TranscribeOptions())
    assert loads == [0, 1]
