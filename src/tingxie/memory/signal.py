"""Synthetic audio for profile runs: speech-like enough that recognisers decode something.

Digital silence makes Whisper emit end-of-text at once, so the decoder's beam search never
runs; whole windows of synthetic speech make it hallucinate to its 224-token limit, which
made profiling 4-8x slower without moving the peak (measured on CTranslate2 on CPU: the peak
is the encoder's, identical within 0.1 MiB for 3, 64 and 224 decoded tokens at batch sizes 1,
4 and 8, whisper-tiny.en and whisper-base). So each item opens with a short run of voiced,
syllable-like bursts, then a faint noise floor: the decoder runs a real beam search over a
few words (10 tokens for whisper-tiny.en, 8 for whisper-base) and stops, at about the cost
of silence. On a GPU with a large model the growing decoder cache may matter more; pass a
whole-item signal to profile_backend there if a profile must cover runaway decoding.
"""

from __future__ import annotations

import numpy as np

from tingxie import SAMPLE_RATE

DEFAULT_VOICED_S = 2.0


def speech_bursts(seconds: float, *, voiced_s: float = DEFAULT_VOICED_S, seed: int = 0) -> np.ndarray:
    """float32 mono at 16 kHz, deterministic: voiced bursts for voiced_s seconds, then near-silence."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SAMPLE_RATE))
    out = (1e-3 * rng.standard_normal(n)).astype(np.float32)  # a noise floor, not digital zero
    voiced_end = n if voiced_s >= seconds else int(voiced_s * SAMPLE_RATE)  # voiced_s may be inf
    pos = 0
    while pos < voiced_end:
        length = min(int(rng.uniform(0.12, 0.30) * SAMPLE_RATE), voiced_end - pos)  # a syllable
        out[pos : pos + length] += 0.3 * _syllable(length, rng)
        pos += length + int(rng.uniform(0.03, 0.15) * SAMPLE_RATE)  # and the gap after it
    return out


def _syllable(length: int, rng: np.random.Generator) -> np.ndarray:
    """A vowel-like sound: harmonics of a voice pitch, loudest near three formants."""
    t = np.arange(length) / SAMPLE_RATE
    f0 = rng.uniform(100, 220)
    formants = (rng.uniform(300, 900), rng.uniform(900, 2500), rng.uniform(2500, 3500))
    harmonics = f0 * np.arange(1, int(7000 // f0) + 1)
    gains = sum(np.exp(-(((harmonics - f) / 200.0) ** 2)) for f in formants)
    phases = rng.uniform(0, 2 * np.pi, len(harmonics))
    wave = (gains[:, None] * np.sin(2 * np.pi * harmonics[:, None] * t + phases[:, None])).sum(axis=0)
    wave *= np.hanning(length)
    peak = np.abs(wave).max()
    return (wave / peak if peak > 0 else wave).astype(np.float32)
