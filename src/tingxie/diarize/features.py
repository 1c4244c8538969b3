"""The speaker encoder's input: a power mel spectrogram, computed in NumPy.

The encoder was trained on librosa's `melspectrogram` of 16 kHz audio (40 Slaney mel bands, a 25 ms
periodic Hann window, a 10 ms hop, centred frames, power 2, no log). This reproduces it without
librosa, so the default install needs nothing more than NumPy.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from tingxie import SAMPLE_RATE

N_FFT = SAMPLE_RATE * 25 // 1000  # 400 samples
HOP = SAMPLE_RATE * 10 // 1000  # 160 samples
N_MELS = 40
TARGET_DBFS = -30.0  # the level the encoder's training audio was normalised to
_INT16_MAX = 2 ** 15 - 1


def _hz_to_mel(hz):
    # Slaney's scale: linear below 1 kHz, logarithmic above (librosa's default, htk=False).
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, mel)


def _mel_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    hz = mel * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, hz)


@lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """(N_MELS, N_FFT // 2 + 1) triangular filters with Slaney's area normalisation."""
    fft_hz = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    filters *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return filters.astype(np.float32)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    n = np.arange(N_FFT)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)).astype(np.float32)  # periodic Hann


def level_gain(samples: np.ndarray) -> float:
    """The factor that brings these samples to the training level (1 for silence), so loudness
    is not mistaken for a voice."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    if rms <= 1e-6:
        return 1.0
    return float(10 ** ((TARGET_DBFS - 20 * np.log10(rms)) / 20))


def normalise_level(samples: np.ndarray) -> np.ndarray:
    """The samples scaled to the training level."""
    gain = level_gain(samples)
    return samples if gain == 1.0 else (samples * gain).astype(np.float32)


MEL_BLOCK_FRAMES = 512  # frames transformed at once: bounds the FFT's scratch whatever the stretch's length


def mel_spectrogram(samples: np.ndarray) -> np.ndarray:
    """(frames, N_MELS) float32 power mel frames of 16 kHz samples; 1 + len // HOP frames.

    Power is quadratic in the samples, so the mel frames of samples scaled by g are these times
    g squared: a stretch's frames are computed once and each window's level applied to its rows.
    """
    padded = np.pad(np.asarray(samples, dtype=np.float32), N_FFT // 2)  # centred frames, zero padded
    count = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(count, N_FFT), strides=(padded.strides[0] * HOP, padded.strides[0]))
    out = np.empty((count, N_MELS), dtype=np.float32)
    for first in range(0, count, MEL_BLOCK_FRAMES):
        spectrum = np.fft.rfft(frames[first:first + MEL_BLOCK_FRAMES] * _window(), axis=1)  # complex64 (NumPy 2)
        power = np.square(spectrum.real, dtype=np.float32) + np.square(spectrum.imag, dtype=np.float32)
        # numpy's einsum loop, not `@`: OpenBLAS would add in an order that depends on the
        # threads free at the moment (backends/whisper/features.py), and a window's voice
        # should not depend on what else the process is doing
        np.einsum("tf,mf->tm", power, mel_filters(), out=out[first:first + MEL_BLOCK_FRAMES])
    return out


def scratch_bytes(samples: int) -> int:
    """Working memory of mel_spectrogram on this many samples: the padded copy, one block's
    windowed frames, spectrum (complex, float64 on NumPy 1) and power, and the output."""
    block = MEL_BLOCK_FRAMES * (N_FFT * 4 + (N_FFT // 2 + 1) * (16 + 4))
    return (samples + N_FFT) * 4 + block + (1 + samples // HOP) * N_MELS * 4
