"""Whisper's log-mel features of a window, the same bits whatever else the process is doing.

faster-whisper's FeatureExtractor projects the power spectrum onto the mel filters with a matrix
product, which numpy hands to OpenBLAS; OpenBLAS splits a product over the threads it finds free
at that moment, and another split adds in another order. The same window's features then came
out a few units in the last place apart depending on what other threads were doing, which is
enough to tip a near-tie in decoding: in the server, a diarized request (its speaker encoder
multiplying matrices on the producer thread) punctuated a window "for you, ask" where the same
window alone gave "for you. Ask" (tests/test_whisper_features.py). Here the projection is numpy's
einsum loop, which never calls BLAS: one thread, one order of additions, at the cost of the BLAS
product (about 8 ms a window, beside about 100 ms of STFT). The STFT and the filters are
faster-whisper's own, so the features are faster-whisper's up to that rounding.
"""

from __future__ import annotations

import numpy as np
from faster_whisper.feature_extractor import FeatureExtractor

HOP_PADDING = 160  # samples of silence after the audio, as faster-whisper appends


class LogMel:
    def __init__(self, n_mels: int):
        self._extractor = FeatureExtractor(feature_size=n_mels)
        self._window = np.hanning(self._extractor.n_fft + 1)[:-1].astype(np.float32)  # periodic Hann
        self.max_frames = self._extractor.nb_max_frames  # frames in a 30 s window

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """(n_mels, frames) features of float32 samples at 16 kHz: 1 + len // 160 frames."""
        extractor = self._extractor
        padded = np.pad(np.asarray(samples, dtype=np.float32), (0, HOP_PADDING))
        spectrum = extractor.stft(padded, extractor.n_fft, extractor.hop_length, window=self._window,
                                  return_complex=True).astype(np.complex64)
        power = np.abs(spectrum[..., :-1]) ** 2
        mel = np.einsum("mf,ft->mt", extractor.mel_filters, power)  # not `@`: see the module's doc
        log = np.log10(np.clip(mel, 1e-10, None))
        log = np.maximum(log, log.max() - 8.0)
        return (log + 4.0) / 4.0
