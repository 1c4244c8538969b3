"""The memory model: its predictions, its fit to profile samples, and the smallest budget."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tingxie.errors import OutOfMemoryError
from tingxie.planner import (
    MemoryModel,
    PlanItem,
    ProfileSample,
    fit_memory_model,
    format_bytes,
    min_budget,
    plan_budgeted,
)
from tingxie.planner.shapes import InputShape, ShapeRule

MiB = 1024**2
TRUE = MemoryModel(fixed=300 * MiB, per_item_s=2 * MiB, per_item_s2=0.05 * MiB)
GRID = [(b, t) for b in (1, 2, 4, 8, 16) for t in (2.0, 5.0, 10.0, 20.0, 30.0)]


def samples_from(model: MemoryModel, grid=GRID, noise: float = 0.0, seed: int = 0) -> list[ProfileSample]:
    rng = random.Random(seed)
    return [
        ProfileSample(b, t, round(model.predict(b, t) * (1 + rng.uniform(-noise, noise))))
        for b, t in grid
    ]


def test_predict_is_the_formula_rounded_up():
    model = MemoryModel(fixed=1000, per_item_s=10, per_item_s2=0.5)
    assert model.predict(4, 30.0) == 1000 + 10 * 120 + 0.5 * 120 * 30
    assert model.predict(1, 0.1) == 1002  # 1001.005 rounds up
    assert model.predict(0, 30.0) == 1000


def test_coefficients_must_not_be_negative():
    with pytest.raises(ValueError):
        MemoryModel(fixed=-1, per_item_s=0, per_item_s2=0)
    with pytest.raises(ValueError):
        MemoryModel(fixed=0, per_item_s=float("nan"), per_item_s2=0)


def test_fit_recovers_exact_coefficients():
    fitted = fit_memory_model(samples_from(TRUE), margin=0.0)
    assert fitted.fixed == pytest.approx(TRUE.fixed, rel=1e-6)
    assert fitted.per_item_s == pytest.approx(TRUE.per_item_s, rel=1e-6)
    assert fitted.per_item_s2 == pytest.approx(TRUE.per_item_s2, rel=1e-6)


def test_fit_adds_the_safety_margin():
    fitted = fit_memory_model(samples_from(TRUE))  # 10 % by default
    assert fitted.fixed == pytest.approx(TRUE.fixed * 1.1, rel=1e-6)
    assert fitted.per_item_s2 == pytest.approx(TRUE.per_item_s2 * 1.1, rel=1e-6)


def test_fit_with_noise_predicts_within_the_noise():
    fitted = fit_memory_model(samples_from(TRUE, noise=0.02, seed=7), margin=0.0)
    for b, t in GRID:
        assert fitted.predict(b, t) == pytest.approx(TRUE.predict(b, t), rel=0.05)
    assert fitted.fixed == pytest.approx(TRUE.fixed, rel=0.05)
    # With the default margin the fit covers every noisy peak it was fitted on.
    noisy = samples_from(TRUE, noise=0.02, seed=7)
    assert all(fit_memory_model(noisy).predict(s.batch_size, s.item_s) >= s.peak_bytes for s in noisy)


def test_fit_drops_a_term_that_would_go_negative():
    # Memory that grows less than linearly would pull the quadratic term below zero.
    samples = [ProfileSample(b, t, int(1000 + 50 * b * t - 0.8 * b * t * t)) for b, t in GRID]
    fitted = fit_memory_model(samples, margin=0.0)
    assert fitted.per_item_s2 == 0.0 and fitted.per_item_s > 0 and fitted.fixed >= 0


def test_fit_with_one_length_only_still_predicts_that_length():
    # Whisper profiles only at its 30 s window: B*T and B*T*T cannot be told apart, which is fine.
    samples = samples_from(TRUE, grid=[(b, 30.0) for b in (1, 2, 4, 8)])
    fitted = fit_memory_model(samples, margin=0.0)
    for b in (1, 3, 16):
        assert fitted.predict(b, 30.0) == pytest.approx(TRUE.predict(b, 30.0), rel=1e-6)


def test_fit_needs_samples():
    with pytest.raises(ValueError):
        fit_memory_model([])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.builds(ProfileSample, st.integers(1, 64), st.floats(0, 60), st.integers(0, 10**11)),
        min_size=1,
        max_size=20,
    )
)
def test_fit_never_predicts_negative(samples):
    fitted = fit_memory_model(samples)
    assert min(fitted.fixed, fitted.per_item_s, fitted.per_item_s2) >= 0
    for s in samples:
        assert fitted.predict(s.batch_size, s.item_s) >= 0


def test_min_budget_is_one_longest_item():
    whisper = InputShape(ShapeRule.FIXED_WINDOW, 30.0)
    assert min_budget(whisper, TRUE) == TRUE.predict(1, 30.0)
    plan_budgeted([PlanItem(0, 4.0)], whisper, TRUE, min_budget(whisper, TRUE), 8)  # fits exactly
    with pytest.raises(OutOfMemoryError) as err:
        plan_budgeted([PlanItem(0, 4.0)], whisper, TRUE, min_budget(whisper, TRUE) - 1, 8)
    assert f"needs {format_bytes(min_budget(whisper, TRUE))}" in str(err.value)
    assert "one 30.0 s item needs 405.0 MiB" in str(err.value)
