"""Paraformer model resolution (offline), the component switches, and the whole pipeline."""

from __future__ import annotations

import dataclasses

import re
from pathlib import Path

import numpy as np
import pytest

from tingxie.errors import ModelNotFoundError, OptionError
from tingxie.backends.paraformer.options import ParaformerOptions
from tingxie.models.funasr_hub import PARAFORMER_MODELS, resolve_funasr_model

pytest_plugins = ["conftest_paraformer"]
PUNCTUATION = re.compile(r"[，。？、,.?]")


# --- resolution: no torch needed ------------------------------------------------------------

@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TINGXIE_CACHE_DIR", str(tmp_path / "tingxie"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "modelscope"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TINGXIE_OFFLINE", "1")
    return tmp_path


def fake_model_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("model: BiCifParaformer\n")
    (path / "model.pt").write_bytes(b"")
    return path


def test_offline_without_a_local_copy_says_what_to_download_and_where(empty_caches):
    from tingxie.models.registry import resolve_model

    model_id = PARAFORMER_MODELS["paraformer-zh"]
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("paraformer-zh")
    message = str(caught.value)
    assert model_id in message and "cannot be reached" in message
    assert str(empty_caches / "tingxie" / "models" / model_id) in message
    with pytest.raises(ModelNotFoundError, match="iic/speech_fsmn_vad"):
        resolve_funasr_model("fsmn-vad", "VAD model")


def test_local_copies_are_found_before_any_download(empty_caches):
    from tingxie.models.registry import resolve_model

    model_id = PARAFORMER_MODELS["paraformer-zh"]
    in_modelscope = fake_model_dir(empty_caches / "modelscope" / "models" / model_id)
    source = resolve_model("paraformer-zh")
    assert (source.family, source.path) == ("paraformer", in_modelscope)
    ours = fake_model_dir(empty_caches / "tingxie" / "models" / model_id)
    assert resolve_model("paraformer-zh").path == ours
    assert resolve_model(str(ours)).family == "paraformer"  # a directory, always


def test_download_only_where_a_network_exists(empty_caches):
    calls = []

    def download(model_id, target):
        calls.append(model_id)
        return fake_model_dir(target)

    with pytest.raises(ModelNotFoundError):
        resolve_funasr_model("ct-punc", online=lambda: False, download=download)
    assert calls == []
    path = resolve_funasr_model("ct-punc", online=lambda: True, download=download)
    assert calls == ["iic/punc_ct-transformer_cn-en-common-vocab471067-large"]
    assert path == empty_caches / "tingxie" / "models" / calls[0]


def test_a_directory_that_is_not_a_model_is_refused(tmp_path):
    from tingxie.models.registry import resolve_model

    with pytest.raises(ModelNotFoundError, match="FunASR"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="unknown punctuation model"):
        resolve_funasr_model("no-such-punc", "punctuation model")


# --- the switches ---------------------------------------------------------------------------

def parse(*argv):
    from tingxie.cli.arguments import options_from_args
    from tingxie.cli.main import build_parser

    args = build_parser().parse_args(["transcribe", "x.wav", *argv])
    return options_from_args(args).model.paraformer


def test_cli_switches_build_paraformer_options():
    assert parse() == ParaformerOptions()
    assert parse("--no-punc") == ParaformerOptions(punctuate=False)
    assert parse("--punc-model", "ct-punc-c", "--vad-model", "fsmn-vad") == \
        ParaformerOptions(vad_model="fsmn-vad", punc_model="ct-punc-c")
    with pytest.raises(OptionError, match="--no-punc"):
        parse("--no-punc", "--punc-model", "ct-punc")
    assert parse().engine == "auto"
    assert parse("--engine", "torch") == ParaformerOptions(engine="torch")
    with pytest.raises(SystemExit):  # argparse: not a choice
        parse("--engine", "tensorrt")


def test_cli_offline_model_error_is_one_line(empty_caches, capsys):
    from tingxie.cli.main import main

    assert main(["transcribe", "tests/data/asr_example.wav", "-m", "paraformer-zh", "-o", str(empty_caches)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "paraformer-zh" in err[0] and "modelscope download" in err[0]


# --- with torch and FunASR ------------------------------------------------------------------

def test_punctuation_switches(paraformer_dir, punc_dir, zh_clips, make_paraformer):
    from tingxie.segments import AudioSegment, join_texts

    samples = zh_clips["paraformer_example3"]
    segment = AudioSegment(0, 2.0, 2.0 + len(samples) / 16000, samples)
    with_punc = make_paraformer(paraformer_dir, punc=str(punc_dir), punctuate=True)
    [words] = with_punc.transcribe_batch([segment])  # the backend gives word pieces, whatever follows
    assert len(words.pieces) > 1 and not any(PUNCTUATION.search(p.text) for p in words.pieces)
    result = with_punc.segment_text(words)  # the per-segment text stage (the server's)
    assert with_punc.punctuator is not None and 1 < len(result.pieces) < len(words.pieces)  # sentences
    assert all(PUNCTUATION.search(p.text) for p in result.pieces[:-1])
    assert [p.start for p in result.pieces] == sorted(p.start for p in result.pieces)
    assert (result.pieces[0].start, result.pieces[-1].end) == (words.pieces[0].start, words.pieces[-1].end)
    # a one-word segment is punctuated on its own too: CT-punc closes a Chinese text with a mark
    one_word = dataclasses.replace(words, pieces=words.pieces[:1])
    [closed] = with_punc.segment_text(one_word).pieces
    assert closed.text.startswith(words.pieces[0].text) and closed.text[-1] in "。？"
    assert (closed.start, closed.end) == (words.pieces[0].start, words.pieces[0].end)
    plain = make_paraformer(paraformer_dir, punctuate=False)
    [unpunctuated] = plain.transcribe_batch([segment])
    assert [p.text for p in unpunctuated.pieces] == [p.text for p in words.pieces]
    unpunctuated = plain.segment_text(unpunctuated)
    assert plain.punctuator is None and len(unpunctuated.pieces) == 1
    assert not PUNCTUATION.search(unpunctuated.pieces[0].text)
    assert unpunctuated.pieces[0].text == join_texts(p.text for p in words.pieces)
    assert unpunctuated.tokens == result.tokens
    with pytest.raises(ModelNotFoundError):  # an explicit punctuation model must exist
        make_paraformer(paraformer_dir, punc=str(Path(punc_dir).parent / "missing"), punctuate=True)
    default = make_paraformer(paraformer_dir, punctuate=True)  # ct-punc absent offline: a warning
    assert default.punctuator is None


def test_fsmn_vad_switch(paraformer_dir, vad_dir, zh_clips, make_paraformer):
    from tingxie.backends.paraformer.fsmn_vad import FsmnSpeechDetector

    backend = make_paraformer(paraformer_dir)
    assert backend.speech_detector() is None  # silero: the Transcriber's own VAD
    backend.options = ParaformerOptions(vad_model=str(vad_dir), punctuate=False)
    detector = backend.speech_detector()
    assert isinstance(detector, FsmnSpeechDetector)
    audio = zh_clips["paraformer_example2"]
    spans = detector.push(audio) + detector.finish()
    assert spans and all(0 <= s.start < s.end <= len(audio) / 16000 for s in spans)


def test_transcriber_loads_a_funasr_model_directory_like_any_model(paraformer_dir, punc_dir, data_dir, offline):
    """Through the registry and tingxie's own pipeline: Silero VAD, planner, executor, backend."""
    from tingxie.backends.paraformer.backend import ParaformerBackend
    from tingxie.options import BatchOptions, ModelOptions, TranscribeOptions
    from tingxie.engine.pipeline import Transcriber

    options = TranscribeOptions(
        model=ModelOptions(name=str(paraformer_dir), threads=1, paraformer=ParaformerOptions(punc_model=str(punc_dir))),
        batch=BatchOptions(batch_size_s=60),  # FunASR's batching: no memory profile needed
    )
    transcriber = Transcriber(options)
    assert isinstance(transcriber.backend, ParaformerBackend)
    assert transcriber.backend.punctuator is not None
    transcript = transcriber.transcribe(str(data_dir / "asr_example.wav"))
    assert transcript.segments and PUNCTUATION.search(transcript.text)
    assert all(0 <= s.start <= s.end <= transcript.stats.audio_seconds + 0.1 for s in transcript.segments)
