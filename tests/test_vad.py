"""Speech detection: the ONNX model on real audio, the span shaping rules, and streaming."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tingxie.audio.decode import decode_audio
from tingxie.errors import ModelNotFoundError
from tingxie.options import VadOptions
from tingxie.vad.detector import (
    FRAME,
    FRAME_S,
    FrameRules,
    SegmentTracker,
    SpeechDetector,
    SpeechProbabilities,
    allowed_cuts,
    detect_speech,
    drop_short,
    merge_spans,
    model_path,
    pad_spans,
    shape_spans,
    speech_runs,
    split_span,
    to_seconds,
)

JFK = Path(__file__).parent / "data" / "jfk.flac"  # speech from about 0.3 s to 10.6 s


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return decode_audio(JFK)


def test_model_is_found_without_importing_torch():
    # In a fresh interpreter: other tests in the same session may import torch themselves.
    code = ("import sys, numpy as np, tingxie.vad.detector as v; v.SpeechProbabilities().push(np.zeros(1024, np.float32)); "
            "assert v.model_path().name == 'silero_vad_v6.onnx'; "
            "assert 'torch' not in sys.modules and 'silero_vad' not in sys.modules and 'faster_whisper' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_missing_model_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match="reinstall tingxie's dependency faster-whisper"):
        model_path()


def test_jfk_speech_is_found(jfk):
    spans = detect_speech(jfk, VadOptions(speech_pad_s=0.2))
    assert spans
    assert 0.0 < spans[0].start <= 0.5 and 10.4 <= spans[-1].end < 11.0
    speech = sum(min(s.end, 10.6) - max(s.start, 0.3) for s in spans)
    assert speech > 0.85 * (10.6 - 0.3)


@pytest.mark.parametrize("audio", [np.zeros(16000 * 5, np.float32),
                                   np.random.default_rng(0).normal(0, 1e-4, 16000 * 5).astype(np.float32),
                                   np.zeros(0, np.float32)])
def test_silence_has_no_speech(audio):
    assert detect_speech(audio, VadOptions()) == []


def test_long_speech_is_cut_at_its_quietest_frames(jfk):
    speech = np.tile(jfk[int(0.35 * 16000) : int(10.55 * 16000)], 4)  # ~41 s, no gaps between copies
    options = VadOptions(max_segment_s=8.0, min_silence_s=3.0, speech_pad_s=0.0, merge_max_s=0.0)
    spans = detect_speech(speech, options)
    assert all(s.duration <= 8.0 for s in spans)
    probabilities = SpeechProbabilities()
    probs = np.concatenate([probabilities.push(speech), probabilities.flush()])  # as detect_speech sees them
    (raw,) = speech_runs(probs, FrameRules.from_options(options))  # one long run
    cuts = {round(b.start / FRAME_S) for a, b in zip(spans, spans[1:]) if a.end == b.start}
    assert len(cuts) >= 5
    # The first cut is the quietest frame of the whole run's allowed range ...
    offsets = allowed_cuts(raw[1] - raw[0], FrameRules.from_options(options).max_len)
    first = raw[0] + offsets[np.argmin(probs[raw[0] + offsets])]
    assert first in cuts and probs[first] == probs[raw[0] + offsets].min()
    # ... every cut is among the quietest frames of the run (the worst, the first piece's allowed
    # range being short, at the 17th percentile with faster-whisper's Silero), none a hard cut at 8 s.
    assert all(probs[c] <= np.percentile(probs[raw[0] : raw[1]], 20) for c in cuts)
    assert any(s.duration < 7.9 for s in spans[:-1])


def test_frame_rules_from_default_options():
    rules = FrameRules.from_options(VadOptions(speech_pad_s=0.2, merge_gap_s=1.0))
    assert (rules.min_silence, rules.min_speech, rules.pad, rules.merge_gap) == (10, 8, 6, 31)
    assert rules.max_len + 2 * rules.pad == 937  # 29.984 s: the most whole frames within 30 s
    assert rules.merge_max == 937 - 12
    assert rules.neg_threshold == pytest.approx(0.35)


def test_hysteresis_starts_above_threshold_and_ends_after_enough_quiet():
    rules = FrameRules.from_options(VadOptions(threshold=0.5, min_silence_s=0.064))  # 2 frames
    probs = [0.1, 0.6, 0.4, 0.3, 0.6, 0.2, 0.1, 0.1, 0.9, 0.2, 0.9]
    # 0.4 is above the exit threshold (0.35): it does not start the quiet; one quiet frame
    # (0.3) is not enough; two (0.2, 0.1) end the span where they began.
    assert speech_runs(np.array(probs), rules) == [(1, 5), (8, 11)]


def test_drop_short():
    assert drop_short([(0, 3), (5, 6), (8, 12)], 3) == [(0, 3), (8, 12)]


def test_merge_spans():
    spans = [(0, 10), (12, 20), (25, 30), (31, 60), (61, 62)]
    assert merge_spans(spans, max_gap=2, max_len=100) == [(0, 20), (25, 62)]
    assert merge_spans(spans, max_gap=5, max_len=30) == [(0, 30), (31, 60), (61, 62)]
    assert merge_spans(spans, max_gap=5, max_len=0) == spans  # disabled
    assert merge_spans([(0, 50), (51, 52)], max_gap=5, max_len=40) == [(0, 50), (51, 52)]


def test_pad_spans():
    # Isolated spans get the full pad; a gap under 2 * pad is shared, the earlier span taking
    # the smaller half; touching pieces get nothing between them; the ends are clamped.
    spans = [(2, 10), (20, 25), (30, 40), (40, 50), (53, 58)]
    assert pad_spans(spans, 4, 0, 60) == [(0, 14), (16, 27), (27, 40), (40, 51), (51, 60)]
    assert pad_spans([(5, 6)], 3, 4, 7) == [(4, 7)]
    assert pad_spans(spans, 0, 0, 60) == spans


def test_allowed_cuts_keep_the_piece_count_minimal_and_avoid_slivers():
    assert list(allowed_cuts(15, 10)) == list(range(5, 11))
    assert list(allowed_cuts(25, 10)) == list(range(5, 11)) + list(range(15, 21))


def test_split_span_at_the_quietest_allowed_frames():
    probs = np.full(25, 0.9)
    probs[[1, 7, 13, 17]] = [0.0, 0.3, 0.1, 0.2]  # a cut at 1 leaves a sliver; at 13, an extra piece
    assert split_span((100, 125), probs, 10) == [(100, 107), (107, 117), (117, 125)]
    assert split_span((0, 10), probs, 10) == [(0, 10)]


def test_shape_spans_drops_then_merges_then_splits_then_pads():
    rules = FrameRules(threshold=0.5, neg_threshold=0.35, min_silence=1, min_speech=3, pad=2,
                       max_len=20, merge_gap=4, merge_max=12)
    probs = np.full(100, 0.9)
    probs[55] = 0.1
    raw = [(0, 2), (10, 15), (18, 21), (40, 70), (90, 99)]
    # (0, 2) is too short; (10, 15) and (18, 21) merge; (40, 70) splits at its quiet frame 55.
    assert shape_spans(raw, probs, 100, rules) == [(8, 23), (38, 55), (55, 72), (88, 100)]


def _check_invariants(spans, duration: float, max_len: float) -> None:
    for span in spans:
        assert 0.0 <= span.start < span.end <= duration
        assert span.duration <= max_len
    for a, b in zip(spans, spans[1:]):
        assert a.end <= b.start


@st.composite
def _vad_options(draw) -> VadOptions:
    max_segment = draw(st.floats(1.0, 20.0))
    return VadOptions(
        threshold=draw(st.floats(0.05, 0.95)),
        min_speech_s=draw(st.floats(0.0, 2.0)),
        min_silence_s=draw(st.floats(0.0, 2.0)),
        speech_pad_s=draw(st.floats(0.0, 1.0)),
        max_segment_s=max_segment,
        merge_gap_s=draw(st.floats(0.0, 3.0)),
        merge_max_s=draw(st.one_of(st.just(0.0), st.floats(0.0, max_segment))),
    )


# Probabilities as runs of equal values, like real speech and pauses.
_probs = st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 400)), max_size=30).map(
    lambda runs: np.repeat([p for p, _ in runs], [n for _, n in runs]).astype(np.float32))


@given(options=_vad_options(), probs=_probs, short=st.integers(0, FRAME - 1))
@settings(max_examples=200, deadline=None)
def test_shaped_spans_are_sorted_disjoint_bounded(options, probs, short):
    rules = FrameRules.from_options(options)
    n_samples = max(len(probs) * FRAME - short, 0) if len(probs) else 0
    shaped = shape_spans(speech_runs(probs, rules), probs, len(probs), rules)
    _check_invariants(to_seconds(shaped, n_samples), n_samples / 16000, options.max_segment_s)


@given(options=_vad_options(), probs=_probs, cuts=st.lists(st.integers(0, 12000), max_size=8))
@settings(max_examples=200, deadline=None)
def test_tracker_in_any_chunking_equals_the_whole_array(options, probs, cuts):
    rules = FrameRules.from_options(options)
    n_samples = len(probs) * FRAME
    expected = to_seconds(shape_spans(speech_runs(probs, rules), probs, len(probs), rules), n_samples)
    tracker = SegmentTracker(options)
    got = []
    for piece in np.split(probs, sorted(c for c in cuts if c <= len(probs))):
        got += tracker.push(piece)
    got += tracker.finish(n_samples)
    assert got == expected


def test_streaming_audio_in_random_chunks_gives_the_same_spans(jfk):
    audio = np.concatenate([jfk, jfk[: 16000 * 3]])
    options = VadOptions(max_segment_s=5.0, merge_max_s=4.0)
    whole_probs = np.concatenate([(p := SpeechProbabilities()).push(audio), p.flush()])
    expected = detect_speech(audio, options)
    rng = np.random.default_rng(1)
    for _ in range(3):
        detector, got, probs, at = SpeechDetector(options), [], [], 0
        while at < len(audio):
            size = int(rng.integers(1, 40000))
            got += detector.push(audio[at : at + size])
            at += size
        got += detector.finish()
        assert got == expected
    chunked = SpeechProbabilities()
    pieces = [chunked.push(c) for c in np.array_split(audio, 17)] + [chunked.flush()]
    np.testing.assert_array_equal(np.concatenate(pieces), whole_probs)
    _check_invariants(expected, len(audio) / 16000, 5.0)
