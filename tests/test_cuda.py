"""The GPU paths on a real CUDA device: memory probes, Paraformer against FunASR on the GPU,
fp16/bf16 and the NaN guard, a real CUDA out-of-memory error split and retried, the measured
memory model and a budget held.

These need a GPU, so the default test run deselects them (pyproject: -m "not cuda"); on a
machine with one: pytest -m cuda tests/test_cuda.py. Without a GPU they fail, never skip.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest_plugins = ["conftest_paraformer"]
import torch  # noqa: E402

from conftest_paraformer import TEST_THREADS, assert_funasr_batches_equal, funasr_tokens, reduced_precision_cost  # noqa: E402
from tingxie.segments import AudioSegment  # noqa: E402

pytestmark = pytest.mark.cuda
MiB = 2**20
# relative error of the encoder output against fp32 on the GPU, real speech, random model
LIMITS = {"float16": 0.01, "bfloat16": 0.05}


def cuda_backend(model_dir, compute_type="float32", **batch_options):
    from tingxie.backends.paraformer.backend import ParaformerBackend
    from tingxie.backends.paraformer.options import ParaformerOptions
    from tingxie.options import DecodeOptions, ModelOptions

    options = ModelOptions(name=str(model_dir), device="cuda", compute_type=compute_type, threads=TEST_THREADS,
                           paraformer=ParaformerOptions(punctuate=False))
    return ParaformerBackend(model_dir, str(model_dir), options, DecodeOptions())


@pytest.fixture(scope="module")
def gpu(paraformer_dir, offline):
    assert torch.cuda.is_available(), "these tests need a CUDA device"
    backend = cuda_backend(paraformer_dir)
    assert backend.device == "cuda" and backend.engine == "torch" and not backend.encode_alone
    return backend


@pytest.fixture(scope="module")
def funasr_gpu(paraformer_dir):
    from funasr import AutoModel

    return AutoModel(model=str(paraformer_dir), device="cuda", disable_update=True, disable_pbar=True,
                     log_level="ERROR")


def long_segments(zh_clips, count, seconds):
    """count segments of `seconds` of real speech each (the clips repeated)."""
    speech = np.concatenate(list(zh_clips.values()))
    speech = np.tile(speech, int(np.ceil(count * seconds * 16000 / len(speech))) + 1)
    n = int(seconds * 16000)
    return [AudioSegment(i, i * seconds, (i + 1) * seconds, speech[i * n: (i + 1) * n]) for i in range(count)]


# --- probes --------------------------------------------------------------------------------

def test_torch_probe_measures_a_real_allocation():
    from tingxie.memory.probes import probe_for

    probe = probe_for("cuda", engine="torch")
    size = 256 * MiB
    with probe.measure() as measured:
        block = torch.empty(size, dtype=torch.uint8, device="cuda")
        assert probe.current_bytes() >= measured.before_bytes + size
    assert size <= measured.peak_bytes - measured.before_bytes <= size + 32 * MiB
    total = torch.cuda.get_device_properties(0).total_memory
    assert 0 < probe.available_bytes() < total
    del block
    assert probe.current_bytes() == measured.before_bytes


def test_nvml_probe_sees_an_allocation_of_another_allocator():
    from tingxie.memory.probes import probe_for

    probe = probe_for("cuda", engine="ctranslate2")
    before = probe.current_bytes()
    with probe.measure() as measured:
        block = torch.ones(1024 * MiB, dtype=torch.uint8, device="cuda")
        torch.cuda.synchronize()
    assert measured.peak_bytes - before >= 1000 * MiB
    del block
    torch.cuda.empty_cache()


# --- Paraformer on the GPU against FunASR on the GPU ----------------------------------------

def test_one_at_a_time_equals_funasr_on_the_gpu(gpu, funasr_gpu, zh_clips):
    for name, samples in zh_clips.items():
        [got] = gpu.recognise([samples])
        [expected] = funasr_gpu.generate(input=samples)
        assert len(got.tokens) > 10, name
        assert " ".join(got.words) == expected["text"], name
        assert got.tokens == funasr_tokens(funasr_gpu, [samples])[0], name


def test_funasr_batches_equal_funasr_batched_inference_on_the_gpu(gpu, funasr_gpu, zh_clips):
    """FunASR batches on a GPU: with its batch_size_s grouping and unmasked padding, tingxie's
    tokens are FunASR's, batch for batch."""
    assert_funasr_batches_equal(gpu, funasr_gpu, list(zh_clips.values()))


def test_padded_gpu_batch_equals_one_at_a_time(gpu, zh_clips):
    clips = list(zh_clips.values())
    alone = [gpu.recognise([c])[0].tokens for c in clips]
    assert [r.tokens for r in gpu.recognise(clips)] == alone
    assert [r.tokens for r in gpu.recognise(clips[::-1])] == alone[::-1]


# --- reduced precision -------------------------------------------------------------------------

@pytest.mark.parametrize("compute_type", ["float16", "bfloat16"])
def test_reduced_precision_on_the_gpu(compute_type, gpu, paraformer_dir, zh_clips, record_property):
    reduced = cuda_backend(paraformer_dir, compute_type)
    error, kept = reduced_precision_cost(gpu, reduced, list(zh_clips.values()), f"cuda_{compute_type}", record_property)
    assert 0 < error < LIMITS[compute_type]
    assert kept >= 0.9
    assert reduced.precision.nan_fallbacks == 0


def test_fp16_overflow_reruns_the_batch_in_fp32(paraformer_dir, tmp_path, zh_clips):
    """A real fp16 overflow, as FunASR users report: one encoder layer's feed-forward weights
    scaled up so its activations pass fp16's 65504 (inf, then NaN after the next LayerNorm);
    fp32 holds them. The guard reruns the batch in fp32: tokens equal the fp32 backend's."""
    import shutil

    hot = tmp_path / "hot-model"
    shutil.copytree(paraformer_dir, hot)
    state = torch.load(hot / "model.pt", weights_only=True)
    state["encoder.encoders.0.feed_forward.w_1.weight"] *= 1e6
    torch.save(state, hot / "model.pt")
    clips = list(zh_clips.values())[:3]
    fp16 = cuda_backend(hot, "float16")
    with torch.inference_mode(), fp16.precision.reduced():
        raw, _ = fp16.asr.model.encode(*fp16.features(clips[:1]))
    assert torch.isnan(raw).any() or torch.isinf(raw).any()  # the overflow is real
    got = fp16.recognise(clips)
    assert fp16.precision.nan_fallbacks == 1
    assert [r.tokens for r in got] == [r.tokens for r in cuda_backend(hot).recognise(clips)]


# --- memory: out of memory, the profile, the budget ----------------------------------------

@pytest.fixture
def gpu_memory_cap():
    """Cap this process's CUDA memory (a real CUDA OOM above it); undone after the test."""
    caps = []

    def cap(total_bytes: int) -> None:
        torch.cuda.empty_cache()
        fraction = total_bytes / torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(fraction)
        caps.append(fraction)

    yield cap
    torch.cuda.set_per_process_memory_fraction(1.0)
    torch.cuda.empty_cache()


def test_real_cuda_out_of_memory_splits_the_batch_and_loses_nothing(gpu, zh_clips, gpu_memory_cap):
    from tingxie.engine.executor import Executor

    segments = long_segments(zh_clips, 16, 60.0)
    alone = [gpu.recognise([s.samples])[0].tokens for s in segments[:2]]
    torch.cuda.reset_peak_memory_stats()
    gpu.recognise([segments[0].samples])
    one = torch.cuda.max_memory_allocated() - torch.cuda.memory_allocated()
    # room for about 3 of these segments at once, never for 16
    gpu_memory_cap(torch.cuda.memory_allocated() + 3 * one + 64 * MiB)
    executor = Executor(gpu)
    results = executor.run(segments)
    assert [r.index for r in results] == list(range(16))
    assert executor.oom_retries >= 1 and executor.ceiling < 16
    assert all(len(r.tokens) > 10 for r in results)
    assert [r.tokens for r in results[:2]] == [tuple(t) for t in alone]


def test_memory_profile_predicts_a_larger_batch(gpu, zh_clips):
    """The profile (torch's allocator statistics) fitted on the default shapes predicts, with
    its margin, at least what a larger batch of real speech takes, and not far more."""
    from tingxie.memory.probes import probe_for
    from tingxie.memory.profile import fit_profile, profile_backend

    probe = probe_for("cuda", engine="torch")
    model = fit_profile(profile_backend(gpu, probe))
    batch = long_segments(zh_clips, 8, 40.0)
    torch.cuda.empty_cache()
    baseline = probe.current_bytes()
    with probe.measure() as measured:
        gpu.transcribe_batch(batch)
    used = measured.peak_bytes - baseline
    predicted = model.predict(8, 40.0)
    print(f"8 x 40 s: measured {used / MiB:.0f} MiB, predicted {predicted / MiB:.0f} MiB")
    assert used <= predicted <= 2.5 * used


def test_budgeted_run_stays_inside_its_budget(paraformer_dir, zh_clips, offline):
    """The pipeline on the GPU with --memory-budget below what the unbudgeted run took: batches
    planned from the measured profile keep torch's peak reserved memory (model included) under
    the budget, and every segment comes out as it did without the budget."""
    import gc

    from tingxie.backends.paraformer.options import ParaformerOptions
    from tingxie.memory.planning import RESERVE_FRACTION
    from tingxie.options import BatchOptions, ModelOptions, TranscribeOptions
    from tingxie.engine.pipeline import Transcriber

    segments = long_segments(zh_clips, 20, 45.0)

    def run(budget):
        options = TranscribeOptions(
            model=ModelOptions(name=str(paraformer_dir), device="cuda", threads=TEST_THREADS, compute_type="float32",
                               paraformer=ParaformerOptions(punctuate=False)),
            batch=BatchOptions(memory_budget=budget))
        transcriber = Transcriber(options)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        transcript = transcriber.transcribe_segments(segments, total_s=20 * 45.0)
        return transcriber, transcript, torch.cuda.max_memory_reserved()

    transcriber, free, free_peak = run(None)
    resident = torch.cuda.memory_allocated()
    budget = int((resident + transcriber.memory.model.predict(3, 45.0)) / (1 - RESERVE_FRACTION)) + MiB
    del transcriber
    gc.collect()
    torch.cuda.empty_cache()
    assert budget < free_peak, "the budget must bind: below what the unbudgeted run took"
    _, tight, tight_peak = run(f"{budget // MiB}MiB")
    print(f"unbudgeted: peak {free_peak / MiB:.0f} MiB in {free.stats.batches} batches; budget {budget / MiB:.0f} "
          f"MiB: peak {tight_peak / MiB:.0f} MiB in {tight.stats.batches} batches, {tight.stats.oom_retries} OOM retries")
    assert tight_peak <= budget
    assert tight.stats.batches > free.stats.batches and tight.stats.segments == free.stats.segments == 20
    assert [p.text for p in tight.segments] == [p.text for p in free.segments]
