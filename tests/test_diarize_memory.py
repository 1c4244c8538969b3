"""--diarize in the memory budget: the encoder is resident before planning, its scratch is taken
from what batches may use, and what the stage keeps grows by vectors, never audio."""

from __future__ import annotations

import tracemalloc

import numpy as np

from tingxie import SAMPLE_RATE
from tingxie.backends.fake import FakeBackend
from tingxie.diarize.stage import load_encoder, working_bytes
from tingxie.diarize.windows import STEP_S, WindowEmbedder, kept_bytes_per_window
from tingxie.memory import planning
from tingxie.memory.planning import MemoryPlanner
from tingxie.options import DiarizeOptions, TranscribeOptions
from tingxie.planner import MemoryModel
from tingxie.planner.shapes import InputShape, ShapeRule
from tingxie.segments import AudioSegment

MiB = 1024**2
WINDOW = InputShape(ShapeRule.FIXED_WINDOW, 30.0)


class FixedProbe:
    device = "cpu"

    def current_bytes(self):
        return 100 * MiB

    def available_bytes(self):
        return 10 * 1024 * MiB

    def release_cache(self):
        pass


def test_the_speaker_stage_s_scratch_comes_out_of_what_batches_may_use():
    backend = FakeBackend(shape=WINDOW)
    on = planning._beside_batches(backend, TranscribeOptions(diarize=DiarizeOptions(enabled=True)))
    assert planning._beside_batches(backend, TranscribeOptions()) == 0
    assert on == working_bytes(30.0) > load_encoder().encoder.scratch_bytes(64)  # mel scratch of a 30 s stretch too
    model = MemoryModel(fixed=0.0, per_item_s=1.0 * MiB, per_item_s2=0.0)
    plain = MemoryPlanner(model, FixedProbe(), 1024 * MiB, shape=WINDOW)
    diarized = MemoryPlanner(model, FixedProbe(), 1024 * MiB, shape=WINDOW, beside_batches=on)
    assert plain.working_budget() - diarized.working_budget() == on


def test_the_encoder_is_loaded_before_the_budget_is_planned(monkeypatch):
    """So the probe's resident figure, which the plan subtracts, holds its weights."""
    from tingxie.diarize import stage
    from tingxie.engine import pipeline

    seen = []

    def profiled(backend, options, **_):
        seen.append(stage.load_encoder.cache_info().currsize)
        return None

    stage.load_encoder.cache_clear()
    monkeypatch.setattr(pipeline, "load_backend", lambda *args, **kwargs: FakeBackend(shape=WINDOW))
    monkeypatch.setattr(pipeline.MemoryPlanner, "profiled", staticmethod(profiled))
    pipeline.Transcriber(TranscribeOptions(diarize=DiarizeOptions(enabled=True)))
    assert seen == [1]


def test_what_the_stage_keeps_is_vectors_and_its_scratch_is_bounded():
    rng = np.random.default_rng(0)
    encoder = load_encoder().encoder
    embedder = WindowEmbedder(encoder)
    seconds = 30
    warm = WindowEmbedder(encoder)  # first-call imports and caches (threadpoolctl, mel filters) are not the stage's keep
    warm.add(AudioSegment(0, 0.0, 2.0, np.zeros(2 * SAMPLE_RATE, np.float32)))
    warm.finish()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for number in range(6):  # three minutes in 30 s segments; each segment's audio is dropped after
            samples = (0.1 * rng.standard_normal(seconds * SAMPLE_RATE)).astype(np.float32)
            embedder.add(AudioSegment(number, number * seconds, (number + 1) * seconds, samples))
            del samples
        windows = embedder.finish()
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    count = len(windows.vectors)
    assert count == 6 * (int(np.ceil((seconds - 1.6) / STEP_S)) + 1)
    assert kept - baseline <= 1.2 * count * kept_bytes_per_window()  # no audio, no mel frames left
    segment_audio = seconds * SAMPLE_RATE * 4
    assert peak - baseline <= segment_audio + working_bytes(seconds) + count * kept_bytes_per_window()
    assert 3600 / STEP_S * kept_bytes_per_window() < 4.5 * MiB  # an hour of speech keeps under 4.5 MiB
