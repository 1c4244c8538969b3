"""Speaker diarization without audio: clustering, turns, labels per word and segment, options, DER."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tingxie.benchmark.der import score
from tingxie.diarize.assign import label_segments, label_words
from tingxie.diarize.clustering import SpeakerCount, cluster, first_appearance
from tingxie.diarize.timeline import Timeline, Turn, chunks, smooth, turns
from tingxie.diarize.windows import window_offsets
from tingxie.errors import OptionError
from tingxie.options import DiarizeOptions
from tingxie.segments import TextSegment


def voices(count: int, seed: int) -> np.ndarray:
    """Unit voice centres about as alike as real voices are (cosine ~0.5 between them)."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(256)
    centres = common + rng.standard_normal((count, 256))
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def windows_of(order: list[int], centres: np.ndarray, seed: int, noise: float = 0.02) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = centres[order] + noise * rng.standard_normal((len(order), centres.shape[1]))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_three_voices_get_exact_labels_by_first_appearance():
    order = [2] * 12 + [0] * 8 + [2] * 6 + [1] * 10 + [0] * 5
    labels = cluster(windows_of(order, voices(3, seed=1), seed=2))
    assert labels.tolist() == [0] * 12 + [1] * 8 + [0] * 6 + [2] * 10 + [1] * 5


def test_the_count_given_wins_over_the_threshold():
    order = [0] * 10 + [1] * 10 + [2] * 10
    vectors = windows_of(order, voices(3, seed=3), seed=4)
    assert len(set(cluster(vectors).tolist())) == 3
    assert len(set(cluster(vectors, SpeakerCount(exactly=2)).tolist())) == 2
    assert len(set(cluster(vectors, SpeakerCount(most=2)).tolist())) == 2
    one_voice = windows_of([0] * 30, voices(1, seed=5), seed=6)
    assert set(cluster(one_voice).tolist()) == {0}
    assert len(set(cluster(one_voice, SpeakerCount(least=2)).tolist())) == 2


def test_a_blip_too_short_to_be_a_speaker_is_folded_into_a_voice():
    centres = voices(3, seed=7)
    order = [0] * 60 + [1] * 60
    vectors = windows_of(order, centres, seed=8)
    vectors[30] = centres[2]  # one stray window of a third voice
    labels = cluster(vectors)
    assert len(set(labels.tolist())) == 2
    assert labels[:30].tolist() == [0] * 30 and labels[60:].tolist() == [1] * 60


def test_chunked_clustering_still_labels_each_window():
    order = [0] * 9 + [1] * 7 + [0] * 8
    vectors = windows_of(order, voices(2, seed=9), seed=10)
    starts = [float(i) for i in range(len(order))]
    ends = [s + 1.6 for s in starts]  # overlapping windows: one stretch, chunks of 4 straddle the turns
    labels = cluster(vectors, chunks=chunks(starts, ends))
    assert labels.tolist() == first_appearance(np.array(order)).tolist()


def test_empty_and_single_inputs():
    assert cluster(np.zeros((0, 256))).tolist() == []
    assert cluster(voices(1, seed=1)).tolist() == [0]


turn_lists = st.lists(st.tuples(st.integers(0, 3), st.integers(5, 12)), min_size=2, max_size=8)


@settings(max_examples=25, deadline=None)
@given(turn_lists, st.integers(0, 1000), st.permutations(range(4)))
def test_labels_are_a_function_of_the_vectors_and_blind_to_who_is_who(spoken, seed, relabel):
    centres = voices(4, seed=seed)
    order = [speaker for speaker, length in spoken for _ in range(length)]
    vectors = windows_of(order, centres, seed=seed + 1)
    labels = cluster(vectors)
    assert cluster(vectors.copy()).tolist() == labels.tolist()  # the same vectors, the same labels
    # The same conversation with the voices handed to other speakers: the same partition.
    swapped = windows_of([relabel[s] for s in order], centres[np.argsort(relabel)], seed=seed + 1)
    assert np.allclose(swapped, vectors)
    permuted_voices = windows_of(order, centres[list(relabel)], seed=seed + 1)
    assert cluster(permuted_voices).tolist() == labels.tolist()
    # and well-separated voices are found exactly
    assert labels.tolist() == first_appearance(np.array(order)).tolist()


def test_a_lone_window_between_two_of_one_voice_is_smoothed():
    starts = [0.0, 1.0, 2.0, 3.0, 10.0]
    ends = [s + 1.6 for s in starts]
    assert smooth(starts, ends, [0, 1, 0, 0, 1]).tolist() == [0, 0, 0, 0, 1]
    # not across a gap in the audio
    assert smooth([0.0, 5.0, 10.0], [1.6, 6.6, 11.6], [0, 1, 0]).tolist() == [0, 1, 0]


def test_turns_split_overlapping_windows_between_their_centres():
    starts = [0.0, 1.0, 2.0, 3.0]
    ends = [1.6, 2.6, 3.6, 4.6]
    got = turns(starts, ends, [0, 0, 1, 1])
    assert got == [Turn(0.0, 2.3, 0), Turn(2.3, 4.6, 1)]


def test_window_offsets_cover_a_stretch_and_end_with_it():
    assert window_offsets(0.3) == []
    assert window_offsets(1.0) == [0.0]
    offsets = window_offsets(5.0)
    assert offsets[0] == 0.0 and offsets[-1] == pytest.approx(5.0 - 1.6)
    assert all(b - a <= 1.0 + 1e-9 for a, b in zip(offsets, offsets[1:]))


def test_a_segment_is_cut_where_its_words_change_speaker():
    timeline = Timeline([Turn(0.0, 2.0, 0), Turn(2.0, 5.0, 1)])
    words = [TextSegment(0.1, 0.5, " Hello"), TextSegment(0.6, 1.2, " there."),
             TextSegment(2.2, 2.8, " Hi,"), TextSegment(2.9, 3.5, " you.")]
    piece = TextSegment(0.0, 4.0, " Hello there. Hi, you.")
    out = label_segments([piece], words, timeline)
    assert [(s.start, s.end, s.text, s.speaker) for s in out] == [
        (0.0, 1.2, "Hello there.", "Speaker 1"), (2.2, 4.0, "Hi, you.", "Speaker 2")]
    assert [w.speaker for w in label_words(words, timeline)] == ["Speaker 1"] * 2 + ["Speaker 2"] * 2


def test_a_cut_keeps_the_segment_s_own_spacing_whatever_the_words_carry():
    timeline = Timeline([Turn(0.0, 2.0, 0), Turn(2.0, 5.0, 1)])
    stripped = [TextSegment(0.1, 0.5, "Hello"), TextSegment(0.6, 1.2, "there."),  # Whisper's words: stripped
                TextSegment(2.2, 2.8, "Hi,"), TextSegment(2.9, 3.5, "you.")]
    out = label_segments([TextSegment(0.0, 4.0, "Hello there. Hi, you.")], stripped, timeline)
    assert [s.text for s in out] == ["Hello there.", "Hi, you."]
    chinese = [TextSegment(0.1, 0.5, "你好"), TextSegment(0.6, 1.2, "。"), TextSegment(2.2, 2.8, "再见")]
    out = label_segments([TextSegment(0.0, 3.0, "你好。再见")], chinese, timeline)
    assert [(s.text, s.speaker) for s in out] == [("你好。", "Speaker 1"), ("再见", "Speaker 2")]


def test_a_stretched_word_belongs_to_who_said_its_start_and_its_segment_ends_at_the_change():
    # tiny.en stretched "comparative..." over 12 s of another voice it did not transcribe
    timeline = Timeline([Turn(55.0, 61.2, 0), Turn(61.6, 72.0, 1), Turn(72.5, 80.0, 0)])
    words = [TextSegment(60.1, 60.5, "in being"), TextSegment(60.5, 72.2, "comparative...")]
    out = label_segments([TextSegment(60.1, 72.2, "in being comparative...")], words, timeline)
    assert [(s.start, s.end, s.speaker) for s in out] == [(60.1, 61.6, "Speaker 1")]
    labelled = label_words(words, timeline)
    assert [(w.end, w.speaker) for w in labelled] == [(60.5, "Speaker 1"), (72.2, "Speaker 1")]  # times kept


def test_the_next_change_of_speaker_skips_the_same_voice_s_later_turns():
    timeline = Timeline([Turn(0, 2, 0), Turn(2.5, 4, 0), Turn(4.2, 6, 1), Turn(6.1, 7, 1), Turn(7.5, 9, 0)])
    assert timeline.change_after(1.0, 0) == 4.2
    assert timeline.change_after(1.0, 1) == 2.5  # a word given to 1 inside 0's turn: 0's next turn counts
    assert timeline.change_after(4.5, 1) == 7.5
    assert timeline.change_after(3.0, 1) == 7.5
    assert timeline.change_after(8.0, 0) is None


def test_without_matching_words_a_segment_gets_its_main_speaker():
    timeline = Timeline([Turn(0.0, 1.0, 0), Turn(1.0, 5.0, 1)])
    pieces = [TextSegment(0.5, 4.0, "Rewritten by a punctuation stage."), TextSegment(6.0, 7.0, "after")]
    out = label_segments(pieces, [], timeline)
    assert [s.speaker for s in out] == ["Speaker 2", "Speaker 2"]  # most time; the nearest turn
    assert label_segments(pieces, [], Timeline([]))[0].speaker is None


@pytest.mark.parametrize("kwargs, flag", [
    ({"speakers": 2}, "--speakers 2 needs --diarize"),
    ({"enabled": True, "speakers": 0}, "--speakers must be between 1 and 32, not 0"),
    ({"enabled": True, "speakers": 2, "max_speakers": 3}, "--speakers 2 already fixes the count"),
    ({"enabled": True, "min_speakers": 4, "max_speakers": 3}, "--min-speakers 4 must not exceed --max-speakers 3"),
])
def test_bad_speaker_options_name_the_flag_and_value(kwargs, flag):
    with pytest.raises(OptionError, match=flag):
        DiarizeOptions(**kwargs)


def test_cli_flags_build_diarize_options():
    from tingxie.cli.arguments import options_from_args
    from tingxie.cli.main import build_parser

    parser = build_parser()
    args = parser.parse_args(["transcribe", "x.wav", "--diarize", "--min-speakers", "2", "--max-speakers", "4"])
    assert options_from_args(args).diarize == DiarizeOptions(enabled=True, min_speakers=2, max_speakers=4)
    assert options_from_args(parser.parse_args(["serve"])).diarize == DiarizeOptions()
    from tingxie.options import TranscribeOptions

    options = options_from_args(args)
    assert TranscribeOptions.from_dict(options.to_dict()) == options


def test_word_attribution_counts_who_said_a_word_by_its_start():
    from tingxie.benchmark.der import word_attribution_error

    reference = [(0.0, 5.0, "a"), (5.5, 12.0, "b")]
    stretched = [(1.0, 1.4, "x"), (4.6, 11.0, "x")]  # a word said by "a" stretched over b's speech
    assert word_attribution_error(reference, stretched) == 0.0
    assert word_attribution_error(reference, [(1.0, 1.4, "x"), (4.6, 11.0, "y"), (6.0, 6.4, "y")]) == pytest.approx(1 / 3)
    assert word_attribution_error(reference, [(1.0, 1.4, "y"), (6.0, 6.4, "x")]) == 0.0  # names are mapped


def test_der_counts_missed_false_alarm_and_confusion():
    reference = [(0.0, 10.0, "a"), (10.0, 20.0, "b")]
    assert score(reference, [(0.0, 10.0, "x"), (10.0, 20.0, "y")]).der == 0.0
    # names do not matter, only the partition
    assert score(reference, [(0.0, 10.0, 7), (10.0, 20.0, 3)]).der == 0.0
    # 2 s of b called a (outside the collars): confusion
    confused = score(reference, [(0.0, 12.0, "x"), (12.0, 20.0, "y")], collar=0.0)
    assert confused.confusion_s == pytest.approx(2.0) and confused.der == pytest.approx(0.1)
    # a boundary off by less than the collar costs nothing
    assert score(reference, [(0.0, 10.2, "x"), (10.2, 20.0, "y")]).der == 0.0
    missed = score(reference, [(0.0, 10.0, "x"), (10.0, 15.0, "y")], collar=0.0)
    assert missed.missed_s == pytest.approx(5.0) and missed.der == pytest.approx(0.25)
    alarm = score(reference, [(0.0, 10.0, "x"), (10.0, 20.0, "y"), (25.0, 27.0, "y")], collar=0.0)
    assert alarm.false_alarm_s == pytest.approx(2.0)
    one = score(reference, [(0.0, 20.0, "x")], collar=0.0)  # one voice found for two
    assert one.confusion_s == pytest.approx(10.0) and one.found_speakers == 1
    collared = score(reference, [(0.0, 20.0, "x")])
    assert collared.reference_s == pytest.approx(20.0 - 4 * 0.25)


def test_serve_refuses_diarize_rather_than_ignore_it():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "tingxie.cli.main", "serve", "--diarize"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--diarize: the server labels speakers per request: send response_format=diarized_json" in result.stderr


@pytest.mark.slow  # loads torch for the cross-check
def test_the_weights_read_without_torch_are_torch_s_and_the_numpy_lstm_computes_what_torch_does():
    import torch  # the funasr extra, which the test install has: missing fails, never skips
    from tingxie.diarize.encoder import SpeakerEncoder
    from tingxie.diarize.weights import default_weights_path, encoder_weights

    weights = encoder_weights()
    checkpoint = torch.load(default_weights_path(), map_location="cpu", weights_only=False)
    for name, value in weights.items():
        assert np.array_equal(checkpoint["model_state"][name].numpy(), value), name
    lstm = torch.nn.LSTM(40, 256, 3, batch_first=True)
    lstm.load_state_dict({k[5:]: torch.from_numpy(v) for k, v in weights.items() if k.startswith("lstm.")})
    linear = torch.nn.Linear(256, 256)
    linear.load_state_dict({"weight": torch.from_numpy(weights["linear.weight"]),
                            "bias": torch.from_numpy(weights["linear.bias"])})
    mels = np.abs(np.random.default_rng(0).standard_normal((4, 160, 40))).astype(np.float32)
    with torch.no_grad():
        _, (hidden, _) = lstm(torch.from_numpy(mels))
        expected = torch.relu(linear(hidden[-1]))
        expected = (expected / expected.norm(dim=1, keepdim=True)).numpy()
    assert np.abs(SpeakerEncoder().embed(mels) - expected).max() < 1e-5


def test_mel_features_put_a_tone_in_its_band_and_count_frames_like_librosa():
    from tingxie.diarize.features import N_MELS, mel_filters, mel_spectrogram

    seconds = np.arange(16000) / 16000
    tone = (0.1 * np.sin(2 * np.pi * 1000 * seconds)).astype(np.float32)
    mel = mel_spectrogram(tone)
    assert mel.shape == (1 + 16000 // 160, N_MELS)
    peak_band = int(np.argmax(mel[50]))
    centres = np.argmax(mel_filters(), axis=1) * 16000 / 400  # each band's peak frequency
    assert abs(centres[peak_band] - 1000) <= 100


def test_a_missing_encoder_is_one_clear_error(monkeypatch):
    import importlib.util

    from tingxie.diarize import weights

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(OptionError, match="pip install --no-deps resemblyzer==0.1.4"):
        weights.default_weights_path()
