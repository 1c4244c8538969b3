"""Fixtures for the Paraformer (FunASR) tests, loaded as a pytest plugin by those tests.

No weights can be downloaded here, so a small Paraformer (BiCifParaformer: SANM encoder,
CifPredictorV3, SANM decoder; a few layers of width 64) is built with random weights through
FunASR's own classes and saved in FunASR's model-directory format. tingxie loads it as it would
a downloaded one. The decoder's output projection is scaled up, so the best token wins by a wide
margin and float noise cannot flip a choice.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
CLIPS = ("asr_example.wav", "zh/paraformer_example2.flac", "zh/paraformer_example3.flac",
         "zh/paraformer_example4.flac", "zh/triton_mid.flac")


def _require_funasr():
    # The test command installs the funasr extra: a missing one must fail, not skip.
    import funasr  # noqa: F401
    import torch  # noqa: F401


@pytest.fixture(scope="session")
def zh_clips() -> dict[str, np.ndarray]:
    """Real Mandarin speech, 16 kHz mono float32, by file stem."""
    import soundfile as sf  # comes with FunASR
    clips = {}
    for name in CLIPS:
        samples, rate = sf.read(DATA / name, dtype="float32")
        assert rate == 16000
        clips[Path(name).stem] = samples
    return clips


@pytest.fixture(scope="session")
def paraformer_dir(tmp_path_factory, zh_clips) -> Path:
    _require_funasr()
    from funasr_random_model import chinese_vocab, save_model_dir, small_paraformer_config

    return save_model_dir(tmp_path_factory.mktemp("paraformer"), small_paraformer_config(d=64),
                          chinese_vocab(300), audio_for_cmvn=list(zh_clips.values()), confident=20.0)


@pytest.fixture(scope="session")
def punc_dir(tmp_path_factory) -> Path:
    _require_funasr()
    from funasr_random_model import chinese_vocab, save_model_dir, small_punc_config

    import torch

    target = save_model_dir(tmp_path_factory.mktemp("ct-punc"), small_punc_config(), chinese_vocab(300), seed=1)
    state = torch.load(target / "model.pt", weights_only=True)
    state["decoder.bias"][0] = -30.0  # mark 0 is <unk>, which a trained model never puts out
    torch.save(state, target / "model.pt")
    return target


@pytest.fixture(scope="session")
def offline(tmp_path_factory):
    """No network: resolution never tries ModelScope."""
    old = os.environ.get("TINGXIE_OFFLINE")
    os.environ["TINGXIE_OFFLINE"] = "1"
    yield
    if old is None:
        os.environ.pop("TINGXIE_OFFLINE", None)
    else:
        os.environ["TINGXIE_OFFLINE"] = old


# One thread: on a 2-core machine shared with other work, every parallel op waits for a
# descheduled peer thread; one thread runs these small models several times faster there.
TEST_THREADS = 1


def make_backend(model_dir: Path, *, compute_type: str = "float32", punc: str | None = None,
                 punctuate: bool = False, threads: int = TEST_THREADS, engine: str = "torch"):
    """The backend on a model directory. engine "torch" unless asked: most tests look inside
    torch's model (hooks, poisoned methods); the ONNX encoder has its own tests and fixture."""
    from tingxie.backends.paraformer.backend import ParaformerBackend
    from tingxie.backends.paraformer.options import ParaformerOptions
    from tingxie.options import DecodeOptions, ModelOptions

    options = ModelOptions(name=str(model_dir), device="cpu", compute_type=compute_type, threads=threads,
                           paraformer=ParaformerOptions(punc_model=punc, punctuate=punctuate, engine=engine))
    return ParaformerBackend(model_dir, str(model_dir), options, DecodeOptions())


@pytest.fixture(scope="session")
def make_paraformer(offline):
    """make_backend, for tests that need a backend of their own (another compute type ...)."""
    return make_backend


@pytest.fixture(scope="session")
def paraformer(paraformer_dir, offline):
    """tingxie's backend on the small model: fp32, no punctuation."""
    return make_backend(paraformer_dir)


@pytest.fixture(scope="session")
def onnx_paraformer(paraformer_dir, offline):
    """The backend with its encoder through ONNX Runtime (what --engine auto runs on a CPU)."""
    backend = make_backend(paraformer_dir, engine="onnx")
    assert backend.engine == "onnx"
    return backend


@pytest.fixture(scope="session", params=["torch", "onnx"])
def each_engine(request, paraformer, onnx_paraformer):
    """The fp32 backend with either encoder engine."""
    return paraformer if request.param == "torch" else onnx_paraformer


@pytest.fixture(scope="session")
def funasr_model(paraformer_dir):
    """FunASR's own AutoModel on the same directory, with the tests' thread count."""
    from funasr import AutoModel

    return AutoModel(model=str(paraformer_dir), device="cpu", ncpu=TEST_THREADS, disable_update=True,
                     disable_pbar=True, log_level="ERROR")


@pytest.fixture(scope="session")
def funasr_alone(funasr_model, zh_clips):
    """FunASR on each clip alone: generate()'s result and the token ids of its own inference."""
    import torch

    out = {}
    for name, samples in zh_clips.items():
        kwargs = dict(funasr_model.kwargs)
        kwargs.pop("tokenizer", None)
        with torch.no_grad():
            [tokens], _ = funasr_model.model.inference(data_in=[samples], key=[name], tokenizer=None, **kwargs)
        out[name] = (funasr_model.generate(input=samples)[0], tokens["token_int"])
    return out


@pytest.fixture(scope="session")
def vad_dir(tmp_path_factory) -> Path:
    """A random FSMN-VAD whose silence output is pushed down: it hears speech wherever the audio
    is louder than -50 dB (its decibel gate), so digital silence between clips ends a span."""
    _require_funasr()
    import copy

    import torch

    from funasr_random_model import FSMN_VAD, save_model_dir

    config = copy.deepcopy(FSMN_VAD)
    config["model_conf"]["decibel_thres"] = -50.0
    target = save_model_dir(tmp_path_factory.mktemp("fsmn-vad"), config, [], seed=2)
    state = torch.load(target / "model.pt", weights_only=True)
    bias = [k for k in state if k.startswith("encoder.out_linear2") and k.endswith("bias")][0]
    state[bias][0] = -30.0  # pdf 0 is silence
    torch.save(state, target / "model.pt")
    return target


def funasr_tokens(funasr_model, batch):
    """Token ids from FunASR's own batched Paraformer inference on a list of arrays."""
    import torch

    kwargs = dict(funasr_model.kwargs)
    kwargs.pop("tokenizer", None)
    with torch.no_grad():
        results, _ = funasr_model.model.inference(data_in=list(batch), key=[f"k{i}" for i in range(len(batch))],
                                                  tokenizer=None, **kwargs)
    return [r["token_int"] for r in results]


def assert_funasr_batches_equal(backend, funasr_model, clips, batch_size_s: float = 20) -> None:
    """With FunASR's batch_size_s grouping and its unmasked padding, the backend's tokens are
    FunASR's own batched inference's, batch for batch (and there is a batch of several)."""
    from tingxie.planner import PlanItem, plan_funasr

    plan = plan_funasr([PlanItem(i, len(s) / 16000) for i, s in enumerate(clips)], batch_size_s=batch_size_s,
                       batch_threshold_s=None, shape=backend.shape)
    assert max(len(b.item_ids) for b in plan.batches) > 1
    backend.mask_padding = False
    try:
        for planned in plan.batches:
            batch = [clips[i] for i in planned.item_ids]
            assert [r.tokens for r in backend.recognise(batch)] == funasr_tokens(funasr_model, batch)
    finally:
        backend.mask_padding = True


def reduced_precision_cost(reference, reduced, clips, label: str, record_property) -> tuple[float, float]:
    """What a reduced precision costs on real speech: the relative error of its encoder output
    against the reference backend's, and the share of the reference's tokens it keeps."""
    from funasr_random_model import encoder_relative_error

    error = encoder_relative_error(reference, reduced, clips)
    record_property(f"{label}_encoder_relative_error", error)
    print(f"{label}: encoder relative error {error:.2e}")
    ours = [r.tokens for r in reduced.recognise(clips)]
    exact = [r.tokens for r in reference.recognise(clips)]
    same = sum(a == b for x, y in zip(ours, exact) for a, b in zip(x, y))
    return error, same / sum(len(x) for x in exact)


def poison_reduced_encode(monkeypatch, model) -> None:
    """Make the model's encoder put a NaN in its output whenever it runs under CPU autocast
    (reduced precision), as fp16/bf16 overflow does; fp32 reruns stay clean."""
    import math

    import torch

    encode = model.encode

    def poisoned(*args, **kwargs):
        out, lens = encode(*args, **kwargs)
        if torch.is_autocast_enabled("cpu"):
            out = out.clone()
            out[0, 0, 0] = math.nan
        return out, lens

    monkeypatch.setattr(model, "encode", poisoned)
