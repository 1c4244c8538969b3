"""The Paraformer backend against FunASR itself, on real Mandarin clips and a small random model.

Equality is on token ids: FunASR and tingxie run the same model code, so where they run the same
batches they must choose the same tokens; where batches differ, the encoder output and the
token log-probabilities must agree within float tolerance.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["conftest_paraformer"]
import funasr  # noqa: F401  (the test install has the funasr extra: missing fails, never skips)
import torch

from conftest_paraformer import assert_funasr_batches_equal  # noqa: E402
from tingxie.segments import AudioSegment  # noqa: E402
from tingxie.planner.shapes import InputShape, ShapeRule  # noqa: E402


def test_one_segment_at_a_time_equals_funasr_generate(each_engine, funasr_alone, zh_clips):
    for name, samples in zh_clips.items():
        expected, expected_tokens = funasr_alone[name]
        [got] = each_engine.recognise([samples])
        assert len(got.tokens) > 10, name
        assert got.tokens == expected_tokens, name
        assert " ".join(got.words) == expected["text"], name
        assert [[round(s * 1000), round(e * 1000)] for s, e in got.times] == expected["timestamp"], name


def test_funasr_batches_equal_funasr_batched_inference(paraformer, funasr_model, zh_clips):
    """With FunASR's batch_size_s grouping and unmasked padding, batch for batch as FunASR."""
    assert_funasr_batches_equal(paraformer, funasr_model, list(zh_clips.values()))


@pytest.fixture(params=["encoder alone (CPU)", "padded encoder batch (GPU)", "ONNX encoder alone (CPU)"])
def batched_paraformer(request, paraformer, onnx_paraformer):
    """The backend every way a batch may run: each item through the encoder alone, the rest
    batched (tingxie's CPU path, in torch or ONNX Runtime), or the whole padded batch (its GPU path)."""
    if request.param.startswith("ONNX"):
        yield onnx_paraformer
        return
    paraformer.encode_alone = request.param.startswith("encoder alone")
    yield paraformer
    paraformer.encode_alone = True


def test_batched_tokens_equal_one_at_a_time(batched_paraformer, funasr_alone, zh_clips):
    """Masked padding: a segment's tokens do not depend on its batch, so they equal FunASR on CPU."""
    alone = [funasr_alone[name][1] for name in zh_clips]
    clips = list(zh_clips.values())
    assert [r.tokens for r in batched_paraformer.recognise(clips)] == alone
    assert [r.tokens for r in batched_paraformer.recognise(clips[::-1])] == alone[::-1]


def test_batched_timestamps_equal_funasr_one_at_a_time(batched_paraformer, funasr_alone, zh_clips):
    """The timestamp BLSTM runs over each item's own frames (packed), not into the padding."""
    batched = batched_paraformer.recognise(list(zh_clips.values()))
    for name, got in zip(zh_clips, batched):
        expected = funasr_alone[name][0]["timestamp"]
        assert [[round(s * 1000), round(e * 1000)] for s, e in got.times] == expected, name


def test_batched_encoder_and_logits_match_alone_within_tolerance(each_engine, zh_clips):
    paraformer = each_engine
    clips = list(zh_clips.values())
    model = paraformer.asr.model
    with torch.inference_mode():
        enc_b, lens_b = paraformer.encode(clips)
        for i, samples in enumerate(clips):
            enc_1, lens_1 = paraformer.encode([samples])
            n = int(lens_1[0])
            assert int(lens_b[i]) == n
            torch.testing.assert_close(enc_b[i, :n], enc_1[0], rtol=1e-4, atol=1e-4)
        # token log-probs: the decoder on the batch against the decoder on each item alone
        pad = torch.arange(enc_b.size(1))[None, :] >= lens_b[:, None]
        enc_b = enc_b.masked_fill(pad[..., None], 0.0)
        emb_b, tok_b = model.calc_predictor(enc_b, lens_b)[:2]
        tok_b = tok_b.round().long()
        dec_b, _ = model.cal_decoder_with_predictor(enc_b, lens_b, emb_b, tok_b)
        for i, samples in enumerate(clips):
            enc_1, lens_1 = paraformer.encode([samples])
            emb_1, tok_1 = model.calc_predictor(enc_1, lens_1)[:2]
            tok_1 = tok_1.round().long()
            assert int(tok_1[0]) == int(tok_b[i])
            dec_1, _ = model.cal_decoder_with_predictor(enc_1, lens_1, emb_1, tok_1)
            torch.testing.assert_close(dec_b[i, : int(tok_1[0])], dec_1[0], rtol=1e-3, atol=1e-3)


def test_timestamp_head_runs_once_and_equals_funasr(paraformer, zh_clips):
    model = paraformer.asr.model
    calls = []
    hook = model.predictor.blstm.register_forward_hook(lambda *a: calls.append(1))
    clips = list(zh_clips.values())[:3]
    try:
        paraformer.mask_padding = False
        ours = paraformer.recognise(clips)
    finally:
        paraformer.mask_padding = True
        hook.remove()
    assert len(calls) == 1  # FunASR's BiCifParaformer.inference runs it twice
    # FunASR's own timestamps for the same batch, through its tokenizer and post-processing
    kwargs = dict(paraformer.asr.kwargs)
    with torch.no_grad():
        results, _ = model.inference(data_in=clips, key=["a", "b", "c"], **kwargs)
    for got, expected in zip(ours, results):
        assert " ".join(got.words) == expected["text"]
        assert [[round(s * 1000), round(e * 1000)] for s, e in got.times] == expected["timestamp"]


def test_transcribe_batch_places_pieces_in_time(paraformer, zh_clips):
    samples = zh_clips["asr_example"]
    segments = [AudioSegment(7, 12.0, 12.0 + len(samples) / 16000, samples),
                AudioSegment(8, 30.0, 30.0 + 0.01, samples[:160])]  # 10 ms: too short to recognise
    first, second = paraformer.transcribe_batch(segments)
    assert (first.index, second.index) == (7, 8)
    assert second.pieces == () and second.tokens == ()
    words = first.pieces  # one piece per word, each in file time
    assert len(words) == len(first.tokens) and all(len(w.text) == 1 for w in words)
    assert all(12.0 <= w.start <= w.end <= segments[0].end + 0.1 for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)
    [piece] = paraformer.segment_text(first).pieces  # no punctuation: one piece per segment
    assert (piece.start, piece.end) == (words[0].start, words[-1].end)
    assert " " not in piece.text and len(piece.text) == len(first.tokens)


def test_threads_come_from_usable_cpus(paraformer_dir, make_paraformer):
    from tingxie.memory.resources import usable_cpus

    backend = make_paraformer(paraformer_dir, threads=0)  # 0: automatic
    assert backend.threads == usable_cpus()
    torch.set_num_threads(4)  # FunASR's AutoModel sets its ncpu, 4 by default
    backend.recognise([torch.zeros(8000).numpy()])
    assert torch.get_num_threads() == usable_cpus()
    assert make_paraformer(paraformer_dir, threads=1).threads == 1


def test_weights_are_memory_mapped_not_copied(paraformer, paraformer_dir):
    with open("/proc/self/maps") as maps:
        assert str(paraformer_dir / "model.pt") in maps.read()
    assert paraformer.shape == InputShape(ShapeRule.VARIABLE, 60.0)


def test_funasr_imported_without_what_only_its_other_models_use(paraformer, paraformer_dir, zh_clips, tmp_path):
    """A fresh process that imports tingxie's backend first leaves scikit-learn, numba and
    transformers out of FunASR's import (funasr_support.importing), and its tokens equal this
    process's, where FunASR was imported whole; the libraries stay importable after."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    clips = list(zh_clips.values())[:3]
    paths = []
    for i, clip in enumerate(clips):
        paths.append(str(tmp_path / f"clip{i}.npy"))
        np.save(paths[-1], clip)
    script = (
        "import json, sys\n"
        "import numpy as np\n"
        "from tingxie.backends.paraformer.backend import ParaformerBackend\n"
        "from conftest_paraformer import make_backend\n"
        "left = [name for name in ('sklearn', 'numba', 'transformers') if name in sys.modules]\n"
        f"backend = make_backend(__import__('pathlib').Path({str(paraformer_dir)!r}))\n"
        f"tokens = [r.tokens for r in backend.recognise([np.load(p) for p in {paths!r}])]\n"
        "import sklearn, transformers  # noqa: F401 (still importable)\n"
        "print(json.dumps({'left_in': left, 'tokens': tokens}))\n"
    )
    env = dict(os.environ, TINGXIE_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["left_in"] == []
    assert out["tokens"] == [list(r.tokens) for r in paraformer.recognise(clips)]
