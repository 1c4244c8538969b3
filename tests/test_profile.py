"""The start-up profile run, its cache, and the budgets derived from a probe."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tingxie.backends.fake import FakeBackend
from tingxie.errors import OutOfMemoryError
from tingxie.memory.budget import default_budget, working_budget
from tingxie.memory.probes import CpuProbe, Measurement
from tingxie.memory.profile import default_shapes, fit_profile, load_or_profile, model_file_key, profile_backend
from tingxie.memory.signal import speech_bursts
from tingxie.planner import MemoryModel, ProfileSample, fit_memory_model
from tingxie.planner.shapes import InputShape, ShapeRule

MiB = 1024**2


@pytest.fixture(autouse=True)
def _no_full_collections(monkeypatch):
    """The profile run collects Python's garbage before every batch, so one batch's leftovers are
    not counted in the next one's sample. The fake backends here book their memory on a ledger
    or free it by reference count, so they leave no garbage. A full collection in a test process
    that also holds torch, FunASR and Gradio takes about 0.8 s, or about 4 s per profile."""
    import types

    from tingxie.memory import profile

    monkeypatch.setattr(profile, "gc", types.SimpleNamespace(collect=lambda *args: 0))
WINDOW = InputShape(ShapeRule.FIXED_WINDOW, max_item_s=30.0)
VARIABLE = InputShape(ShapeRule.VARIABLE, max_item_s=30.0)


class LedgerProbe:
    """A device whose usage is whatever the test's backend books on it: exact and instant."""

    device = "ledger"

    def __init__(self, held: int = 1000 * MiB, available: int = 4000 * MiB):
        self.held, self.peak, self.available = held, held, available

    def book(self, nbytes: int) -> None:
        self.held += nbytes
        self.peak = max(self.peak, self.held)

    def reset_peak(self) -> None:
        self.peak = self.held

    def release_cache(self) -> None:
        pass  # the ledger keeps no cache

    def peak_bytes(self) -> int:
        return self.peak

    def current_bytes(self) -> int:
        return self.held

    def available_bytes(self) -> int:
        return self.available

    @contextlib.contextmanager
    def measure(self):
        result = Measurement(before_bytes=self.held)
        self.reset_peak()
        yield result
        result.peak_bytes = self.peak


@dataclass
class LedgerBackend(FakeBackend):
    """Books fixed + per_item_s * B*T + per_item_s2 * B*T^2 bytes for the duration of a batch.

    keep_fraction of it stays booked afterwards, as an allocator's cache would, and a batch
    first reuses what earlier ones left.
    """

    probe: LedgerProbe = field(default_factory=LedgerProbe)
    true: MemoryModel = MemoryModel(5 * MiB, 2 * MiB, 0.0)
    keep_fraction: float = 0.0
    cached: int = 0
    calls: int = 0

    def transcribe_batch(self, batch):
        self.calls += 1
        results = super().transcribe_batch(batch)  # raises BackendOutOfMemory above oom_above_cost_s
        t = self.shape.padded_seconds([s.duration for s in batch]) / len(batch)
        need = self.true.predict(len(batch), t)
        extra = max(0, need - self.cached)
        self.probe.book(extra)
        keep = max(self.cached, int(need * self.keep_fraction))
        self.probe.book(keep - self.cached - extra)
        self.cached = keep
        return results


@dataclass
class NumpyBackend(FakeBackend):
    """Really allocates per_item_s bytes per item-second (and per_item_s2 per item-second^2)."""

    per_item_s: int = 2 * MiB
    per_item_s2: int = 0

    def transcribe_batch(self, batch):
        t = self.shape.padded_seconds([s.duration for s in batch]) / len(batch)
        nbytes = int(len(batch) * t * self.per_item_s + len(batch) * t * t * self.per_item_s2)
        work = np.ones(nbytes, dtype=np.uint8)  # ones touch every page, so they are resident
        results = super().transcribe_batch(batch)
        del work
        return results


def _fit(samples, margin=0.0) -> MemoryModel:
    return fit_memory_model(samples, margin=margin)


# --- profile_backend --------------------------------------------------------------------


def test_default_shapes():
    assert default_shapes(WINDOW) == [(1, 30.0), (2, 30.0), (4, 30.0), (8, 30.0)]
    assert (1, 10.0) in default_shapes(InputShape(ShapeRule.VARIABLE, max_item_s=10.0))  # capped
    assert all(t <= 10.0 for _, t in default_shapes(InputShape(ShapeRule.VARIABLE, max_item_s=10.0)))


def test_fixed_window_samples_recover_the_true_model():
    probe = LedgerProbe()
    backend = LedgerBackend(shape=WINDOW, probe=probe)
    samples = profile_backend(backend, probe)
    assert [(s.batch_size, s.item_s) for s in samples] == [(1, 30.0), (2, 30.0), (4, 30.0), (8, 30.0)]
    assert [s.peak_bytes for s in samples] == [backend.true.predict(b, 30.0) for b in (1, 2, 4, 8)]
    assert backend.calls == 5  # a warm-up and four measured batches
    fitted = _fit(samples)
    assert fitted.per_item_s == pytest.approx(2 * MiB, rel=1e-6)


def test_variable_grid_identifies_the_quadratic_term():
    probe = LedgerProbe()
    true = MemoryModel(3 * MiB, 1 * MiB, 0.05 * MiB)
    backend = LedgerBackend(shape=VARIABLE, probe=probe, true=true)
    fitted = _fit(profile_backend(backend, probe))
    assert fitted.per_item_s == pytest.approx(true.per_item_s, rel=1e-3)
    assert fitted.per_item_s2 == pytest.approx(true.per_item_s2, rel=1e-3)


def test_samples_are_measured_from_the_baseline_not_from_cached_leftovers():
    # The backend keeps 60 % of each batch cached and reuses it; measuring from just before
    # each call would see only the growth over the previous batch.
    probe = LedgerProbe()
    backend = LedgerBackend(shape=WINDOW, probe=probe, keep_fraction=0.6)
    samples = profile_backend(backend, probe)
    warm = backend.true.predict(1, 30.0) * 0.6  # the warm-up's cache is part of the baseline
    for s in samples:
        assert s.peak_bytes == pytest.approx(backend.true.predict(s.batch_size, 30.0) - warm, abs=1)


def test_an_out_of_memory_shape_stops_growth_and_is_recorded():
    probe = LedgerProbe()
    backend = LedgerBackend(shape=WINDOW, probe=probe, oom_above_cost_s=3 * 30.0)
    samples = profile_backend(backend, probe)
    assert [s.batch_size for s in samples] == [1, 2]
    assert samples.out_of_memory == [(4, 30.0)]
    assert backend.calls == 4  # warm-up, 1, 2, 4 (failed); 8 never tried


def test_variable_out_of_memory_skips_only_larger_shapes():
    probe = LedgerProbe()
    backend = LedgerBackend(shape=VARIABLE, probe=probe, oom_above_cost_s=25.0)
    samples = profile_backend(backend, probe, [(1, 5.0), (4, 5.0), (2, 15.0), (1, 30.0), (2, 30.0), (1, 15.0)])
    assert [(s.batch_size, s.item_s) for s in samples] == [(1, 5.0), (1, 15.0), (4, 5.0)]
    assert samples.out_of_memory == [(2, 15.0), (1, 30.0)]  # (2, 30) is skipped, both bound it


def test_out_of_memory_at_warm_up_measures_nothing():
    probe = LedgerProbe()
    backend = LedgerBackend(shape=WINDOW, probe=probe, oom_above_cost_s=1.0)
    samples = profile_backend(backend, probe)
    assert list(samples) == [] and samples.out_of_memory == [(1, 30.0)]
    with pytest.raises(OutOfMemoryError):
        fit_profile(samples)


def test_one_measured_shape_is_charged_per_item():
    model = fit_profile([ProfileSample(1, 30.0, 300 * MiB)], margin=0.1)
    assert model.fixed == 0 and model.per_item_s == pytest.approx(1.1 * 10 * MiB)
    assert model.predict(2, 30.0) > model.predict(1, 30.0)


def test_bad_shapes_are_refused():
    backend = LedgerBackend(shape=WINDOW)
    for shapes in ([], [(0, 30.0)], [(1, 31.0)], [(1, 0.0)], [(1.5, 30.0)]):
        with pytest.raises(ValueError):
            profile_backend(backend, backend.probe, shapes)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="exact RSS peaks need Linux")
def test_real_allocations_are_measured_and_fitted():
    probe = CpuProbe()
    backend = NumpyBackend(shape=InputShape(ShapeRule.FIXED_WINDOW, max_item_s=10.0), per_item_s=2 * MiB)
    samples = profile_backend(backend, probe)
    assert [s.batch_size for s in samples] == [1, 2, 4, 8]
    for s in samples:  # 20, 40, 80, 160 MiB, give or take the interpreter's own noise
        assert s.peak_bytes == pytest.approx(s.batch_size * 10 * 2 * MiB, abs=8 * MiB)
    assert _fit(samples).per_item_s == pytest.approx(2 * MiB, rel=0.1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="exact RSS peaks need Linux")
def test_real_allocations_identify_the_quadratic_term():
    probe = CpuProbe()
    backend = NumpyBackend(shape=VARIABLE, per_item_s=1 * MiB, per_item_s2=MiB // 10)
    fitted = _fit(profile_backend(backend, probe))
    assert fitted.per_item_s == pytest.approx(1 * MiB, rel=0.25)
    assert fitted.per_item_s2 == pytest.approx(0.1 * MiB, rel=0.25)


def test_speech_bursts_is_deterministic_and_quiet_after_the_voiced_part():
    a, b = speech_bursts(5.0), speech_bursts(5.0)
    assert a.dtype == np.float32 and a.shape == (80_000,) and np.array_equal(a, b)
    voiced, tail = a[:32_000], a[40_000:]
    assert np.abs(voiced).max() > 0.2 and np.abs(tail).max() < 0.01


def test_a_whole_item_signal_can_be_asked_for():
    whole = speech_bursts(3.0, voiced_s=float("inf"))
    assert np.abs(whole[-8000:]).max() > 0.2


# --- load_or_profile ----------------------------------------------------------------------

KEY = {"model_path": "/models/x", "model_bytes": 123, "device": "cpu", "compute_type": "int8",
       "beam_size": 5, "threads": 4}


def test_load_or_profile_caches_the_fitted_model(tmp_path):
    backend = LedgerBackend(shape=WINDOW)
    first = load_or_profile(backend, backend.probe, KEY, tmp_path)
    calls = backend.calls
    assert calls == 5
    again = load_or_profile(backend, backend.probe, dict(KEY), tmp_path)
    assert again == first and backend.calls == calls  # the backend did not run again
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    stored = json.loads(files[0].read_text())
    assert stored["key"]["beam_size"] == 5 and stored["key"]["shapes"][0] == [1, 30.0]
    assert len(stored["samples"]) == 4
    assert first.per_item_s == pytest.approx(1.1 * 2 * MiB, rel=1e-6)  # with the default margin


@pytest.mark.parametrize("change", [{"beam_size": 1}, {"model_bytes": 124}, {"device": "cuda"},
                                    {"compute_type": "float32"}, {"threads": 2}, {"extra": True}])
def test_a_changed_key_part_profiles_again(tmp_path, change):
    backend = LedgerBackend(shape=WINDOW)
    load_or_profile(backend, backend.probe, KEY, tmp_path)
    calls = backend.calls
    load_or_profile(backend, backend.probe, {**KEY, **change}, tmp_path)
    assert backend.calls == 2 * calls
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_other_shapes_profile_again(tmp_path):
    backend = LedgerBackend(shape=WINDOW)
    load_or_profile(backend, backend.probe, KEY, tmp_path)
    calls = backend.calls
    load_or_profile(backend, backend.probe, KEY, tmp_path, shapes=[(1, 30.0), (2, 30.0)])
    assert backend.calls == calls + 3


def test_a_partial_signal_is_keyed_by_its_arguments_not_its_address(tmp_path):
    backend = LedgerBackend(shape=WINDOW)
    load_or_profile(backend, backend.probe, KEY, tmp_path, signal=functools.partial(speech_bursts, voiced_s=1.0))
    calls = backend.calls
    load_or_profile(backend, backend.probe, KEY, tmp_path, signal=functools.partial(speech_bursts, voiced_s=1.0))
    assert backend.calls == calls
    load_or_profile(backend, backend.probe, KEY, tmp_path, signal=functools.partial(speech_bursts, voiced_s=3.0))
    assert backend.calls == 2 * calls
    (stored, *_) = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert "speech_bursts(voiced_s=" in stored["key"]["signal"]


@pytest.mark.parametrize("garbage", ["", "{not json", "[]", '{"format": 1, "key": null}',
                                      '{"format": 1, "model": {"fixed": -1}}'])
def test_a_corrupt_cache_file_is_ignored_and_rewritten(tmp_path, garbage):
    backend = LedgerBackend(shape=WINDOW)
    model = load_or_profile(backend, backend.probe, KEY, tmp_path)
    (path,) = tmp_path.glob("*.json")
    if garbage.startswith('{"format": 1, "model"'):  # right key, impossible model
        data = json.loads(path.read_text())
        data["model"]["fixed"] = -1
        garbage = json.dumps(data)
    path.write_text(garbage)
    calls = backend.calls
    assert load_or_profile(backend, backend.probe, KEY, tmp_path) == model
    assert backend.calls == 2 * calls
    assert json.loads(path.read_text())["model"]["fixed"] == model.fixed  # rewritten, whole
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_a_profile_cut_short_by_out_of_memory_is_not_cached(tmp_path):
    backend = LedgerBackend(shape=WINDOW, oom_above_cost_s=2 * 30.0)
    model = load_or_profile(backend, backend.probe, KEY, tmp_path)
    assert model.predict(2, 30.0) > model.predict(1, 30.0)
    assert list(tmp_path.glob("*.json")) == []
    backend = LedgerBackend(shape=WINDOW, oom_above_cost_s=1.0)
    with pytest.raises(OutOfMemoryError):
        load_or_profile(backend, backend.probe, KEY, tmp_path)


def test_default_cache_root_is_under_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TINGXIE_CACHE_DIR", str(tmp_path))
    backend = LedgerBackend(shape=WINDOW)
    load_or_profile(backend, backend.probe, KEY)
    assert len(list((tmp_path / "profiles").glob("*.json"))) == 1


def test_model_file_key_changes_with_the_weights(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"x" * 10)
    (tmp_path / "config.json").write_text("{}")
    key = model_file_key(tmp_path)
    assert key["model_bytes"] == 12 and key["model_path"] == str(tmp_path.resolve())
    (tmp_path / "model.bin").write_bytes(b"y" * 11)
    assert model_file_key(tmp_path)["model_bytes"] == 13
    stat = (tmp_path / "model.bin").stat()
    os.utime(tmp_path / "model.bin", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert model_file_key(tmp_path)["model_mtime_ns"] != key["model_mtime_ns"]


# --- budgets ------------------------------------------------------------------------------


def test_working_budget_is_the_total_less_what_is_resident():
    probe = LedgerProbe(held=300 * MiB)
    assert working_budget(1024 * MiB, probe) == 724 * MiB
    with pytest.raises(OutOfMemoryError, match=r"256\.0 MiB.*300\.0 MiB"):
        working_budget(256 * MiB, probe)
    with pytest.raises(OutOfMemoryError):
        working_budget(300 * MiB, probe)


def test_default_budget_is_a_fraction_of_what_the_process_could_reach():
    probe = LedgerProbe(held=1000, available=9000)
    assert default_budget(probe) == 7000
    assert default_budget(probe, fraction=0.5) == 5000
    with pytest.raises(ValueError):
        default_budget(probe, fraction=0)


# --- the real model -----------------------------------------------------------------------


PROFILE_IN_A_FRESH_PROCESS = """
import json
from tingxie.backends.registry import load_backend
from tingxie.memory.probes import CpuProbe
from tingxie.memory.profile import fit_profile, profile_backend
from tingxie.options import DecodeOptions, ModelOptions

backend = load_backend(ModelOptions(name="whisper-tiny.en", device="cpu"), DecodeOptions())
samples = profile_backend(backend, CpuProbe(), [(1, 30.0), (2, 30.0), (4, 30.0)])
model = fit_profile(samples)
print(json.dumps({"batch_sizes": [s.batch_size for s in samples], "out_of_memory": samples.out_of_memory,
                  "per_item_s": model.per_item_s, "predictions": [model.predict(b, 30.0) for b in (1, 2, 4, 8)]}))
"""


@pytest.mark.slow
def test_profile_whisper_tiny_en_on_cpu():
    # In a fresh process, as `tingxie transcribe` profiles: a long test session's heap already
    # holds freed memory that a batch reuses unseen (its RSS grows by less than the batch needs),
    # which once made an encoder window look like 6 MiB here.
    import subprocess

    run = subprocess.run([sys.executable, "-c", PROFILE_IN_A_FRESH_PROCESS], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert run.returncode == 0, run.stderr[-2000:]
    profile = json.loads(run.stdout.strip().splitlines()[-1])
    assert profile["batch_sizes"] == [1, 2, 4] and not profile["out_of_memory"]
    assert profile["per_item_s"] * 30 > 10 * MiB  # an encoder window costs tens of MiB
    predictions = profile["predictions"]
    assert predictions == sorted(predictions) and len(set(predictions)) == 4  # its time: a benchmark's business
