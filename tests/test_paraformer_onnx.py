"""The Paraformer encoder through ONNX Runtime (--engine onnx, what auto picks on a CPU).

The encoder is exported once with FunASR's own export classes (in a child process), checked
against torch's, and cached. Its fp32 tokens and timestamps must equal FunASR's (tests in
test_paraformer.py run both engines); here: the engine choice, the cache, the errors, and int8.
"""

from __future__ import annotations

import logging
import shutil

import pytest

pytest_plugins = ["conftest_paraformer"]
import funasr  # noqa: F401  (the test install has the funasr extra: missing fails, never skips)
import torch

from tingxie.errors import OptionError  # noqa: E402
from tingxie.backends.paraformer import onnx_export  # noqa: E402
from tingxie.backends.paraformer.onnx_export import ExportError, export_dir, exported_parts, part_file  # noqa: E402
from funasr_random_model import encoder_relative_error  # noqa: E402


def test_auto_runs_onnx_encoder_and_decoder_on_cpu_for_float32_and_int8(paraformer_dir, make_paraformer):
    for compute_type in ("float32", "int8"):
        backend = make_paraformer(paraformer_dir, compute_type=compute_type, engine="auto")
        assert backend.engine == "onnx" and backend.execution == "onnx encoder, decoder item by item"
        int8 = compute_type == "int8"
        assert backend.onnx.encoder.path.name == part_file("encoder", int8)
        assert backend.onnx.decoder.path.name == part_file("decoder", int8)


def test_onnx_fp32_equals_torch_on_real_speech(paraformer, onnx_paraformer, zh_clips):
    clips = list(zh_clips.values())
    assert encoder_relative_error(paraformer, onnx_paraformer, clips) < 1e-5
    ours = onnx_paraformer.recognise(clips)
    exact = paraformer.recognise(clips)
    assert [(r.tokens, r.words, r.times) for r in ours] == [(r.tokens, r.words, r.times) for r in exact]


def test_onnx_int8_leaves_torch_unquantized(paraformer, paraformer_dir, zh_clips, make_paraformer):
    """int8: the encoder and decoder are ONNX Runtime's int8 models; torch quantizes nothing (its
    encoder and decoder never run, their weights stay unread file pages, not quantized copies)."""
    backend = make_paraformer(paraformer_dir, compute_type="int8", engine="onnx")
    model = backend.asr.model
    linear_types = {type(m).__module__ for m in model.modules() if "Linear" in type(m).__name__}
    assert linear_types and not any("quantized" in t for t in linear_types)
    torch_int8 = make_paraformer(paraformer_dir, compute_type="int8", engine="torch")
    assert any("quantized" in type(m).__module__ for m in torch_int8.asr.model.decoder.modules())
    for either in (backend, torch_int8):  # the timestamp BLSTM in int8 (packed per item) with both engines
        assert "quantized" in type(either._timestamp_lstm.lstm).__module__
    clips = list(zh_clips.values())
    error = encoder_relative_error(paraformer, backend, clips)
    print(f"int8 onnx: encoder relative error {error:.2e}")
    assert 0 < error < 0.08  # measured ~2e-2 on this random model
    ours = [r.tokens for r in backend.recognise(clips)]
    exact = [r.tokens for r in paraformer.recognise(clips)]
    same = sum(a == b for x, y in zip(ours, exact) for a, b in zip(x, y))
    assert same >= 0.8 * sum(len(x) for x in exact)


def test_export_is_cached_by_checkpoint(paraformer_dir, onnx_paraformer, monkeypatch):
    paths = exported_parts(paraformer_dir, paraformer_dir / "model.pt", int8=False)
    assert paths["encoder"] == onnx_paraformer.onnx.encoder.path
    assert {p.parent for p in paths.values()} == {export_dir(paraformer_dir, paraformer_dir / "model.pt")}
    # a cached export is used as it is: no child process runs
    monkeypatch.setattr(onnx_export.subprocess, "run", lambda *a, **k: pytest.fail("exported again"))
    assert exported_parts(paraformer_dir, paraformer_dir / "model.pt", int8=False) == paths


def test_changed_weights_export_again(paraformer_dir, tmp_path):
    copy = shutil.copytree(paraformer_dir, tmp_path / "model")
    before = export_dir(copy, copy / "model.pt")
    state = torch.load(copy / "model.pt", weights_only=True)
    torch.save(state, copy / "model.pt")  # same weights, a new file: a new cache entry
    assert export_dir(copy, copy / "model.pt") != before


def test_a_failed_export_is_one_clear_error_and_writes_nothing(paraformer_dir, tmp_path):
    broken = shutil.copytree(paraformer_dir, tmp_path / "broken")
    (broken / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ExportError, match="exporting the encoder and decoder of .* to ONNX failed: .+"):
        exported_parts(broken, broken / "model.pt", int8=False)
    folder = export_dir(broken, broken / "model.pt")
    assert not folder.exists()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(folder.name)]  # no staging left


def test_auto_falls_back_to_torch_when_the_export_fails(paraformer_dir, make_paraformer, monkeypatch, caplog):
    def fail(*args, **kwargs):
        raise ExportError("exporting the encoder to ONNX failed: no export class")

    monkeypatch.setattr(onnx_export, "exported_parts", fail)
    with caplog.at_level(logging.WARNING):
        backend = make_paraformer(paraformer_dir, engine="auto")
    assert backend.engine == "torch" and backend.onnx is None
    assert "running the encoder and decoder in torch" in caplog.text
    with pytest.raises(ExportError, match="no export class"):
        make_paraformer(paraformer_dir, engine="onnx")


def test_onnx_engine_refuses_what_it_cannot_run(paraformer_dir, make_paraformer):
    from tingxie.backends.paraformer.options import ParaformerOptions
    from tingxie.backends.paraformer.precision import cpu_has_bf16

    with pytest.raises(OptionError, match="--engine"):
        ParaformerOptions(engine="tensorrt")
    # bf16 runs in torch (ONNX Runtime has no x86 bf16 kernels); a CPU without bf16 refuses it sooner
    with pytest.raises(OptionError, match="--engine onnx runs float32 or int8" if cpu_has_bf16() else "bfloat16"):
        make_paraformer(paraformer_dir, compute_type="bfloat16", engine="onnx")
    if cpu_has_bf16():
        assert make_paraformer(paraformer_dir, compute_type="bfloat16", engine="auto").engine == "torch"


def test_how_a_batchs_items_meet_the_encoder_sessions(paraformer_dir, make_paraformer, zh_clips, monkeypatch):
    """fp32: one session on both threads, items one after another on the caller's thread; int8:
    items side by side on a single-threaded copy, a batch of one on the two-thread session."""
    import threading

    clips = list(zh_clips.values())
    for compute_type in ("float32", "int8"):
        backend = make_paraformer(paraformer_dir, engine="onnx", threads=2, compute_type=compute_type)
        encoder = backend.onnx.encoder
        assert encoder.threads == 2 and backend.item_workers == 2
        assert (encoder.side_by_side_session is None) == (compute_type == "float32")
        seen = {"copy": [], "all threads": []}
        sessions = {"all threads": encoder.session, "copy": encoder.side_by_side_session}
        for name, session in sessions.items():
            if session is None:
                continue

            def record(*args, _run=session.run, _name=name, **kwargs):
                seen[_name].append(threading.get_ident())
                return _run(*args, **kwargs)

            monkeypatch.setattr(session, "run", record, raising=False)
        got = backend.recognise(clips)
        alone = [backend.recognise([c])[0] for c in clips]
        if compute_type == "float32":
            assert seen["all threads"] == [threading.get_ident()] * (2 * len(clips))
        else:
            assert len(seen["copy"]) == len(clips) and len(set(seen["copy"])) == 2  # two at a time
            assert len(seen["all threads"]) == len(clips)  # each batch of one
        # int8 quantizes activations per tensor; the encoder and the decoder see one item at a
        # time, so its tokens do not depend on the batch either
        assert [r.tokens for r in got] == [r.tokens for r in alone]


def test_the_onnx_decoder_runs_each_item_on_its_own_frames_and_tokens(onnx_paraformer, zh_clips, monkeypatch):
    """Item by item, each with only its own encoder frames and token count: no padded batch of
    logits (batch x longest x vocabulary, the run's memory peak when it was batched)."""
    session = onnx_paraformer.onnx.decoder.session
    shapes = []

    def record(outputs, feeds, _run=session.run):
        shapes.append((feeds["encoder_out"].shape[:2], int(feeds["encoder_out_lens"][0]),
                       feeds["acoustic_embeds"].shape[:2], int(feeds["token_num"][0])))
        return _run(outputs, feeds)

    monkeypatch.setattr(session, "run", record, raising=False)
    clips = list(zh_clips.values())
    got = onnx_paraformer.recognise(clips)
    assert len(shapes) == len(clips)
    for (frames_shape, frames, tokens_shape, tokens), rec in zip(shapes, got):
        assert frames_shape == (1, frames) and tokens_shape == (1, tokens)
        assert tokens >= len(rec.tokens) > 0
    assert len({frames for _, frames, _, _ in shapes}) > 1  # the clips differ in length
