"""Longer inputs built from the small real recordings in tests/data (nothing large is committed)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from tingxie.audio.decode import decode_audio

DATA = Path(__file__).parent / "data"


def english_pieces() -> list[np.ndarray]:
    pieces = [decode_audio(str(p)) for p in sorted((DATA / "ljspeech").glob("*.flac"))]
    return pieces + [decode_audio(str(DATA / "jfk.flac"))]


def joined(pieces: list[np.ndarray], seed: int = 0) -> np.ndarray:
    """The pieces with 0.4-1.5 s of silence between them, as real_en_long is built."""
    rng = np.random.default_rng(seed)
    out = []
    for piece in pieces:
        out += [piece, np.zeros(int(rng.uniform(0.4, 1.5) * 16000), np.float32)]
    return np.concatenate(out)


def write_flac(path: Path, audio: np.ndarray) -> Path:
    encode_flac(str(path), audio)
    return path


def encode_flac(target, audio: np.ndarray) -> None:
    """16-bit FLAC of 16 kHz mono audio, to a path or a writable file object."""
    container = av.open(target, "w", format="flac")
    stream = container.add_stream("flac", rate=16000, layout="mono")
    samples = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    for start in range(0, len(samples), 16000):
        frame = av.AudioFrame.from_ndarray(samples[None, start:start + 16000], format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
