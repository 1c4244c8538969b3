"""Reduced precision (bf16 autocast, int8 dynamic quantization), the NaN guard, out-of-memory
split and retry, and the memory profile, on the Paraformer backend."""

from __future__ import annotations


import pytest

from tingxie.errors import OptionError

pytest_plugins = ["conftest_paraformer"]
from conftest_paraformer import poison_reduced_encode, reduced_precision_cost  # noqa: E402
import funasr  # noqa: F401  (the test install has the funasr extra: missing fails, never skips)
import torch

from tingxie.backends.paraformer.precision import (  # noqa: E402
    cpu_has_bf16,
    resolve_compute_type,
)
from tingxie.segments import AudioSegment  # noqa: E402

# On real speech through a random model (no outliers learnt), measured: int8 ~2e-2, bf16 ~5e-3.
LIMITS = {"int8": 0.08, "bfloat16": 0.03}


def test_compute_type_choices():
    assert resolve_compute_type("default", "cpu") == "float32"
    assert resolve_compute_type("auto", "cuda") == "float32"  # fp16 measured slower on a GPU
    assert resolve_compute_type("float16", "cuda") == "float16"
    assert resolve_compute_type("int8_float32", "cpu") == "int8"
    for bad, device in (("float16", "cpu"), ("int8", "cuda"), ("int8_float16", "cpu")):
        with pytest.raises(OptionError):
            resolve_compute_type(bad, device)


@pytest.mark.parametrize("compute_type", ["int8", "bfloat16"])
def test_reduced_precision_encoder_error_on_real_speech(compute_type, paraformer, paraformer_dir, zh_clips,
                                                        make_paraformer, record_property):
    if compute_type == "bfloat16" and not cpu_has_bf16():
        pytest.skip("this CPU has neither AVX512-BF16 nor AMX")
    reduced = make_paraformer(paraformer_dir, compute_type=compute_type)
    error, kept = reduced_precision_cost(paraformer, reduced, list(zh_clips.values()), compute_type, record_property)
    assert 0 < error < LIMITS[compute_type]
    assert kept >= 0.8


def test_nan_in_reduced_precision_reruns_the_batch_in_fp32(paraformer, paraformer_dir, zh_clips, make_paraformer,
                                                          monkeypatch):
    if not cpu_has_bf16():
        pytest.skip("this CPU has neither AVX512-BF16 nor AMX")
    reduced = make_paraformer(paraformer_dir, compute_type="bfloat16")
    model = reduced.asr.model
    poison_reduced_encode(monkeypatch, model)
    clips = list(zh_clips.values())[:2]
    got = reduced.recognise(clips)
    assert reduced.precision.nan_fallbacks == 1
    assert [r.tokens for r in got] == [r.tokens for r in paraformer.recognise(clips)]


def test_out_of_memory_splits_the_batch_and_loses_nothing(paraformer, zh_clips, monkeypatch):
    from tingxie.engine.executor import Executor

    model = paraformer.asr.model
    decode = model.cal_decoder_with_predictor  # batched on every device (the CPU encodes items alone)

    def small_memory(encoder_out, *args, **kwargs):
        if encoder_out.shape[0] > 2:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
        return decode(encoder_out, *args, **kwargs)

    monkeypatch.setattr(model, "cal_decoder_with_predictor", small_memory)
    clips = list(zh_clips.values())
    batch = [AudioSegment(i, 10.0 * i, 10.0 * i + len(s) / 16000, s) for i, s in enumerate(clips)]
    executor = Executor(paraformer)
    results = executor.run(batch)
    assert [r.index for r in results] == list(range(len(clips)))
    assert executor.oom_retries >= 1 and executor.ceiling <= 2
    monkeypatch.setattr(model, "cal_decoder_with_predictor", decode)
    assert [r.tokens for r in results] == [tuple(r.tokens) for r in paraformer.recognise(clips)]


def test_out_of_memory_releases_the_failed_batch(paraformer, zh_clips, monkeypatch):
    """The BackendOutOfMemory the executor holds while it retries keeps none of the failed
    batch's tensors alive (through the original error's frames): on a GPU they held its memory
    and every smaller retry ran out too."""
    import weakref

    from tingxie.backends.base import BackendOutOfMemory

    model = paraformer.asr.model
    held = []

    def out_of_memory(encoder_out, *args, **kwargs):
        working = torch.empty(1024, 1024)  # what a batch allocates before it runs out
        held.append(weakref.ref(working))
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(model, "cal_decoder_with_predictor", out_of_memory)
    clips = list(zh_clips.values())[:2]
    batch = [AudioSegment(i, 10.0 * i, 10.0 * i + len(s) / 16000, s) for i, s in enumerate(clips)]
    with pytest.raises(BackendOutOfMemory) as caught:
        paraformer.transcribe_batch(batch)
    assert "out of memory" in str(caught.value) and caught.value.__cause__ is not None
    assert held and held[0]() is None


def test_memory_profile_fits_the_backend(paraformer):
    from tingxie.memory.probes import CpuProbe
    from tingxie.memory.profile import fit_profile, profile_backend

    shapes = [(1, 2.0), (3, 2.0), (1, 6.0), (2, 6.0), (1, 10.0)]
    samples = profile_backend(paraformer, CpuProbe(), shapes)
    assert len(samples) == len(shapes) and not samples.out_of_memory
    model = fit_profile(samples)
    assert model.predict(4, 20.0) >= model.predict(1, 10.0) >= model.predict(1, 2.0) >= 0
