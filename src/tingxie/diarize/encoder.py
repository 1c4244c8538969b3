"""Resemblyzer's speaker encoder (a 3-layer LSTM over 40 mel bands) run in NumPy.

Each 1.6 s window of speech becomes a 256-d voice vector (a d-vector): the last hidden state of the
top LSTM layer, through a linear layer and a ReLU, scaled to unit length. Same-voice windows point
the same way, so cosine similarity compares voices. Numbers match torch's nn.LSTM to float32
rounding; no torch at run time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tingxie.diarize.weights import encoder_weights

WINDOW_FRAMES = 160  # 1.6 s of 10 ms frames: the encoder's training length
EMBEDDING_SIZE = 256


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warnings for large |x|


class SpeakerEncoder:
    def __init__(self, weights_path: Path | None = None):
        weights = encoder_weights(weights_path)
        self.layers = []
        layer = 0
        while f"lstm.weight_ih_l{layer}" in weights:
            # torch's gate order is input, forget, cell candidate, output; moving the candidate
            # last lets one sigmoid cover the three sigmoid gates.
            size = weights[f"lstm.weight_hh_l{layer}"].shape[1]
            order = np.r_[0:2 * size, 3 * size:4 * size, 2 * size:3 * size]
            self.layers.append((
                np.ascontiguousarray(weights[f"lstm.weight_ih_l{layer}"][order].T),
                np.ascontiguousarray(weights[f"lstm.weight_hh_l{layer}"][order].T),
                (weights[f"lstm.bias_ih_l{layer}"] + weights[f"lstm.bias_hh_l{layer}"])[order],
            ))
            layer += 1
        self.linear_t = np.ascontiguousarray(weights["linear.weight"].T)
        self.linear_b = weights["linear.bias"]

    @property
    def weight_bytes(self) -> int:
        arrays = [a for layer in self.layers for a in layer] + [self.linear_t, self.linear_b]
        return sum(a.nbytes for a in arrays)

    def embed(self, mels: np.ndarray) -> np.ndarray:
        """(batch, frames, 40) mel windows -> (batch, 256) unit vectors."""
        sequence = np.asarray(mels, dtype=np.float32)
        batch, steps, _ = sequence.shape
        hidden = np.zeros((batch, 0), dtype=np.float32)
        for w_ih, w_hh, bias in self.layers:
            size = w_hh.shape[0]
            inputs = sequence @ w_ih + bias  # every step's input projection at once
            hidden = np.zeros((batch, size), dtype=np.float32)
            cell = np.zeros((batch, size), dtype=np.float32)
            outputs = np.empty((batch, steps, size), dtype=np.float32)
            for t in range(steps):
                gates = hidden @ w_hh
                gates += inputs[:, t]
                sig = _sigmoid(gates[:, :3 * size])
                candidate = np.tanh(gates[:, 3 * size:])
                cell *= sig[:, size:2 * size]
                cell += sig[:, :size] * candidate
                hidden = sig[:, 2 * size:] * np.tanh(cell)
                outputs[:, t] = hidden
            sequence = outputs
        raw = np.maximum(hidden @ self.linear_t + self.linear_b, 0.0)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return (raw / np.maximum(norms, 1e-12)).astype(np.float32)
