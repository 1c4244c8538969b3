"""FunASR's pipeline in `tingxie transcribe`: FSMN-VAD and punctuation over the whole recording.

Against FunASR's own AutoModel(model, vad_model, punc_model) on the same recording (the small
random models of conftest_paraformer), and streamed against whole-recording runs.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

pytest_plugins = ["conftest_paraformer"]
import funasr  # noqa: F401  (the test install has the funasr extra: missing fails, never skips)
import torch
import soundfile as sf


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory, zh_clips):
    """The clips three times over with a second of silence after each: about 2 minutes, so it
    crosses FSMN-VAD's 60 s stride and tingxie's 30 s decoding chunks."""
    gap = np.zeros(16000, np.float32)
    audio = np.concatenate([x for _ in range(3) for clip in zh_clips.values() for x in (clip, gap)])
    path = tmp_path_factory.mktemp("recording") / "zh.wav"
    sf.write(path, audio, 16000)
    return path, audio


@pytest.fixture(scope="module")
def funasr_full(paraformer_dir, vad_dir, punc_dir, long_recording):
    from funasr import AutoModel

    model = AutoModel(model=str(paraformer_dir), vad_model=str(vad_dir), punc_model=str(punc_dir), device="cpu",
                      ncpu=1, disable_update=True, disable_pbar=True, log_level="ERROR")
    [result] = model.generate(input=str(long_recording[0]), sentence_timestamp=True)
    return model, result


def test_cli_with_fsmn_vad_and_punctuation_equals_funasr_automodel(paraformer_dir, vad_dir, punc_dir, long_recording,
                                                                  funasr_full, tmp_path, offline):
    from tingxie.cli.main import main

    path, _ = long_recording
    assert main(["transcribe", str(path), "-m", str(paraformer_dir), "--vad-model", str(vad_dir),
                 "--punc-model", str(punc_dir), "--threads", "1", "--batch-size-s", "60",
                 "-f", "json", "-o", str(tmp_path), "-q"]) == 0
    got = json.loads((tmp_path / "zh.json").read_text())
    _, expected = funasr_full
    assert got["stats"]["segments"] >= 10  # FSMN-VAD's spans, about one per clip
    assert len(expected["text"]) > 200 and got["text"] == expected["text"]
    sentences = expected["sentence_info"]
    assert len(sentences) > 20
    expected_times = [(s["start"] / 1000, s["end"] / 1000) for s in sentences]
    assert [(s["start"], s["end"]) for s in got["segments"]] == expected_times
    assert "".join(s["text"] for s in got["segments"]) == got["text"]


def test_a_resumed_run_punctuates_as_an_uninterrupted_one(paraformer_dir, vad_dir, punc_dir, long_recording, offline):
    """Checkpoints hold each segment's words; a resumed run feeds them to the punctuation again."""
    from tingxie.backends.paraformer.options import ParaformerOptions
    from tingxie.options import BatchOptions, ModelOptions, TranscribeOptions
    from tingxie.engine.pipeline import Transcriber

    options = TranscribeOptions(
        model=ModelOptions(name=str(paraformer_dir), threads=1, device="cpu",
                           paraformer=ParaformerOptions(vad_model=str(vad_dir), punc_model=str(punc_dir))),
        batch=BatchOptions(max_batch_size=2))
    transcriber = Transcriber(options)
    windows = []
    first = transcriber.transcribe(str(long_recording[0]), on_window=windows.append)
    assert len(windows) > 2 and [p for w in windows for p in w.output] == first.segments
    done = {r.index: r for w in windows[: len(windows) // 2] for r in w.results}
    resumed = transcriber.transcribe(str(long_recording[0]), recorded=done.get)
    assert resumed.segments == first.segments and resumed.text == first.text


def test_streamed_fsmn_vad_equals_funasr_on_the_whole_recording(vad_dir, long_recording, funasr_full):
    from tingxie.backends.paraformer.fsmn_vad import FsmnVad

    _, audio = long_recording
    model, _ = funasr_full
    with torch.inference_mode():
        kwargs = dict(model.vad_kwargs)
        [expected], _ = model.vad_model.inference(data_in=[torch.from_numpy(audio)], key=["vad"], **kwargs)
    vad = FsmnVad(vad_dir)
    whole = vad.detect(audio)
    assert [[round(s.start * 1000), round(s.end * 1000)] for s in whole] == expected["value"]
    # longer, to see the held audio move on: FunASR's 60 s strides, and a span FSMN-VAD cuts at 60 s
    audio = np.tile(audio, 3)
    whole = vad.detect(audio)
    detector, streamed, held_from = vad.detector(), [], []
    for at in range(0, len(audio), 27_000):  # 1.7 s chunks, not a divisor of the 60 s stride
        streamed += detector.push(audio[at: at + 27_000])
        held_from.append(detector.earliest_start_s())
        assert all(s.start >= held_from[-1] for s in whole[len(streamed):])  # still cuttable
    streamed += detector.finish()
    assert streamed == whole
    # what is held moves on with the stream: a stride, an open span and a look-back at most
    assert held_from == sorted(held_from) and held_from[-1] > len(audio) / 16000 - 130


def random_results(count: int, seed: int = 0):
    """Segment results of random Chinese words with times, as the backend gives them (word pieces)."""
    from funasr_random_model import chinese_vocab
    from tingxie.segments import SegmentResult, TextSegment

    vocab = [w for w in chinese_vocab(300) if len(w) == 1 and "\u4e00" <= w <= "\u9fff"]
    rng, at, out = random.Random(seed), 0.0, []
    for index in range(count):
        words = []
        for _ in range(rng.randint(0, 40)):
            words.append(TextSegment(round(at, 3), round(at + 0.2, 3), rng.choice(vocab)))
            at += 0.25
        out.append(SegmentResult(index, tuple(words)))
        at += 1.0
    return out


def test_streamed_punctuation_equals_funasr_on_the_joined_text(punc_dir, funasr_full):
    from tingxie.backends.paraformer.punctuation import Punctuator

    model, _ = funasr_full
    results = random_results(40)
    words = [p for r in results for p in r.pieces]
    assert len(words) > 600  # many mini-sentences, each with its carry
    text = "".join(w.text for w in words)
    [expected], _ = model.punc_model.inference(data_in=[text], key=["punc"], **model.punc_kwargs)
    punctuator = Punctuator(punc_dir)
    whole = punctuator.sentences(results)
    assert "".join(s.text for s in whole) == expected["text"]
    stream = punctuator.stream()
    streamed = [s for r in results for s in stream.push([r])] + stream.finish()
    assert streamed == whole
    # each sentence is timed by its first and last word
    assert whole[0].start == words[0].start and whole[-1].end == words[-1].end
    assert all(a.end <= b.start for a, b in zip(whole, whole[1:]))
