"""CifPredictorV3's timestamp BLSTM run over each item's own frames in a padded batch.

FunASR runs the BLSTM over the whole padded batch; its backward direction then starts in the
padding, so a segment's timestamps depend on what it was batched with. FunASR on CPU runs one
segment at a time, where there is no padding. Packing the sequences by their lengths gives each
item exactly the frames it has alone, so batched timestamps are FunASR's one-at-a-time ones.
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class PackedLSTM(torch.nn.Module):
    """A batch-first LSTM fed the lengths of the current batch (None: all full length)."""

    def __init__(self, lstm: torch.nn.Module):
        super().__init__()
        self.lstm = lstm
        self.lengths: torch.Tensor | None = None

    def forward(self, x, *args):
        lengths = self.lengths
        if lengths is None or x.size(0) == 1 or bool((lengths == x.size(1)).all()):
            return self.lstm(x, *args)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.lstm(packed, *args)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return out, state


def pack_timestamp_lstm(predictor) -> PackedLSTM | None:
    """Put a PackedLSTM around the predictor's timestamp BLSTM (inside any precision wrapper)."""
    holder, name = predictor, "blstm"
    current = getattr(predictor, "blstm", None)
    inner = getattr(current, "lstm", None)
    if not _is_lstm(current) and _is_lstm(inner):
        holder, name, current = current, "lstm", inner  # the precision's ReducedLSTM
    if not _is_lstm(current) or not current.batch_first:
        return None
    packed = PackedLSTM(current)
    setattr(holder, name, packed)
    return packed


def _is_lstm(module) -> bool:
    """torch's LSTM, or its int8 dynamically quantized form (which takes packed sequences too)."""
    from torch.ao.nn.quantized.dynamic import LSTM as QuantizedLSTM

    return isinstance(module, (torch.nn.LSTM, QuantizedLSTM))
