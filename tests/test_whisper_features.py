"""Whisper's features (backends/whisper/features.py) and so its text do not depend on how many
BLAS threads are free: a speaker encoder on another thread once limited OpenBLAS to one thread
while a window's features were computed, and the window's punctuation changed ("for you, ask"
against "for you. Ask")."""

from __future__ import annotations

import numpy as np
from faster_whisper.feature_extractor import FeatureExtractor
from threadpoolctl import threadpool_limits

from tingxie.audio.decode import decode_audio
from tingxie.backends.whisper.features import LogMel
from tingxie.diarize.features import mel_spectrogram


def _speech(data_dir) -> np.ndarray:
    jfk = decode_audio(str(data_dir / "jfk.flac"))
    lj = np.concatenate([decode_audio(str(data_dir / "ljspeech" / f"LJ001-000{i}.flac")) for i in (1, 2)])
    return np.concatenate([jfk, np.zeros(9600, np.float32), lj])[:480000]


def test_the_features_are_the_same_bits_with_one_blas_thread_or_all(data_dir):
    samples = _speech(data_dir)
    features = LogMel(80)
    free = features(samples)
    with threadpool_limits(limits=1, user_api="blas"):
        one = features(samples)
    assert free.tobytes() == one.tobytes()
    assert free.shape == (80, 1 + len(samples) // 160)


def test_the_features_are_faster_whispers_up_to_rounding(data_dir):
    samples = _speech(data_dir)
    ours, theirs = LogMel(80)(samples), FeatureExtractor(feature_size=80)(samples)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
    assert LogMel(128)(samples[:16000]).shape == (128, 101)  # large-v3's 128 bins


def test_the_speaker_encoders_mel_frames_are_the_same_bits_with_one_blas_thread_or_all(data_dir):
    samples = _speech(data_dir)
    free = mel_spectrogram(samples)
    with threadpool_limits(limits=1, user_api="blas"):
        one = mel_spectrogram(samples)
    assert free.tobytes() == one.tobytes()


def test_a_transcript_is_the_same_whatever_blas_threads_are_free(tmp_path, data_dir, tiny_transcriber):
    # what a diarized request's speaker encoder did to the windows decoded beside it
    from long_audio import write_flac

    path = str(write_flac(tmp_path / "two_voices.flac", _speech(data_dir)))
    free = tiny_transcriber.transcribe(path)
    with threadpool_limits(limits=1, user_api="blas"):
        one = tiny_transcriber.transcribe(path)
    assert [(s.text, s.start, s.end) for s in one.segments] == [(s.text, s.start, s.end) for s in free.segments]
    assert "fellow Americans" in free.text
