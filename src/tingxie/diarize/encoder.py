"""Resemblyzer's speaker encoder (a 3-layer LSTM over 40 mel bands) run in NumPy.

Each 1.6 s window of speech becomes a 256-d voice vector (a d-vector): the last hidden state of the
top LSTM layer, through a linear layer and a ReLU, scaled to unit length. Same-voice windows point
the same way, so cosine similarity compares voices. Numbers match torch's nn.LSTM to float32
rounding; no torch at run time.

All windows of a batch advance together, one time step at a time, through all three layers: per
step and layer one matrix product [input, hidden] @ [W_ih; W_hh] for every window, then the gates
in place in preallocated buffers. Nothing grows with the window's length, so the working memory is
a few rows per window (`scratch_bytes`), and the products are float32 matrix-matrix work (the
encoder's cost is almost all in them: ~60 GFLOP/s on one AVX2 core).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tingxie.diarize.weights import encoder_weights

WINDOW_FRAMES = 160  # 1.6 s of 10 ms frames: the encoder's training length
EMBEDDING_SIZE = 256
_FLOAT = np.dtype(np.float32).itemsize


class SpeakerEncoder:
    def __init__(self, weights_path: Path | None = None):
        weights = encoder_weights(weights_path)
        self.hidden_size = size = weights["lstm.weight_hh_l0"].shape[1]
        self.input_size = weights["lstm.weight_ih_l0"].shape[1]
        # torch's gate order is input, forget, cell candidate, output; moving the candidate last
        # lets one tanh cover all four gates: sigmoid(x) = (1 + tanh(x / 2)) / 2, so the three
        # sigmoid gates' rows are halved here. Hidden states are kept doubled (2h = (1 + tanh) *
        # tanh(c), one product fewer per step), so every weight that reads a hidden state is halved
        # too. Halving is exact in binary floating point: the results are torch's to rounding.
        order = np.r_[0:2 * size, 3 * size:4 * size, 2 * size:3 * size]
        gate_scale = np.ones(4 * size, dtype=np.float32)
        gate_scale[:3 * size] = 0.5
        self.layers: list[tuple[np.ndarray, np.ndarray]] = []
        layer = 0
        while f"lstm.weight_ih_l{layer}" in weights:
            w_ih = weights[f"lstm.weight_ih_l{layer}"][order].T * gate_scale
            w_hh = weights[f"lstm.weight_hh_l{layer}"][order].T * gate_scale * 0.5
            if layer > 0:
                w_ih = w_ih * 0.5  # reads the doubled hidden state of the layer below
            bias = (weights[f"lstm.bias_ih_l{layer}"] + weights[f"lstm.bias_hh_l{layer}"])[order] * gate_scale
            self.layers.append((np.ascontiguousarray(np.vstack([w_ih, w_hh]), dtype=np.float32),
                                bias.astype(np.float32)))
            layer += 1
        self.linear_t = np.ascontiguousarray(weights["linear.weight"].T * 0.5, dtype=np.float32)
        self.linear_b = weights["linear.bias"].astype(np.float32)

    @property
    def weight_bytes(self) -> int:
        arrays = [a for layer in self.layers for a in layer] + [self.linear_t, self.linear_b]
        return sum(a.nbytes for a in arrays)

    def scratch_bytes(self, windows: int) -> int:
        """Working memory of one embed() call on this many windows: its float32 copy of the mel
        frames, each layer's [input, hidden] rows and cell, the gate rows and two temporaries."""
        size = self.hidden_size
        per_window = (WINDOW_FRAMES * self.input_size  # the mels as float32
                      + (self.input_size + size) + (len(self.layers) - 1) * 2 * size  # [input, hidden] rows
                      + len(self.layers) * size  # cells
                      + 4 * size + 2 * size  # gates, two temporaries
                      + 2 * EMBEDDING_SIZE)  # the output and its normalised copy
        return windows * per_window * _FLOAT

    def embed(self, mels: np.ndarray) -> np.ndarray:
        """(batch, frames, 40) mel windows -> (batch, 256) unit vectors."""
        mels = np.asarray(mels, dtype=np.float32)
        batch, steps, features = mels.shape
        size = self.hidden_size
        # rows[l] = [input of layer l at this step, layer l's previous (doubled) hidden state]
        rows = [np.zeros((batch, features + size), dtype=np.float32)]
        rows += [np.zeros((batch, 2 * size), dtype=np.float32) for _ in self.layers[1:]]
        cells = [np.zeros((batch, size), dtype=np.float32) for _ in self.layers]
        gates = np.empty((batch, 4 * size), dtype=np.float32)
        spare = np.empty((batch, size), dtype=np.float32)
        hidden = np.zeros((batch, size), dtype=np.float32)
        for t in range(steps):
            rows[0][:, :features] = mels[:, t]
            for number, (weight, bias) in enumerate(self.layers):
                np.matmul(rows[number], weight, out=gates)
                gates += bias
                _lstm_cell(gates, cells[number], hidden, spare, size)
                rows[number][:, -size:] = hidden
                if number + 1 < len(self.layers):
                    rows[number + 1][:, :size] = hidden
        raw = np.maximum(hidden @ self.linear_t + self.linear_b, 0.0)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return (raw / np.maximum(norms, 1e-12)).astype(np.float32)


def _lstm_cell(gates: np.ndarray, cell: np.ndarray, hidden: np.ndarray, spare: np.ndarray, size: int) -> None:
    """One LSTM step in place: gates (pre-activations, sigmoid rows halved) -> new cell and the
    doubled hidden state."""
    np.tanh(gates, out=gates)
    gates[:, :3 * size] += 1.0  # 2 * sigmoid for the input, forget and output gates
    np.multiply(cell, gates[:, size:2 * size], out=cell)
    np.multiply(gates[:, :size], gates[:, 3 * size:], out=spare)
    cell += spare
    cell *= 0.5  # both terms carried a doubled gate
    np.tanh(cell, out=spare)
    np.multiply(gates[:, 2 * size:3 * size], spare, out=hidden)
