"""A Paraformer's encoder and decoder exported to ONNX (funasr_support.onnx_export), run by ONNX Runtime.

On this CPU (2 cores, AVX512-VNNI, AMX) ONNX Runtime ran Paraformer-large's encoder on a 15 s
segment in 0.69 s on one thread against torch's 0.92 s (fp32, same output to 1e-7), and its
int8 model (s8 weights) in 0.19 s against torch's dynamic int8 0.43 s, at half torch's error
(docs/benchmarks.md). A batch's items go through the encoder each alone (as FunASR runs them):
* fp32: one after another on one session with all threads. Side by side on single-threaded
  sessions was a little faster on the default plans, but a budget-limited plan is mostly
  one-item batches, which then ran on one core (19.5x real time against 26.9x), and a second
  copy of the weights (0.6 GiB) for those does not fit the budgets fp32 runs under. Two items
  sharing one two-thread session was the slowest (each op's work split four ways on two cores).
* int8: side by side on a single-threaded copy (0.089 s an item against 0.12 on a shared
  two-thread session, 15 s items), a batch of one on the session with all threads; the second
  copy costs about 0.25 GiB.
The decoder runs item by item on all threads (OnnxDecoder says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # no arena: ONNX Runtime's arena keeps its largest batch's buffers for the process's life
    # (measured: peak 2.20 -> 2.10 GiB, resident after a run 1.91 -> 1.58 GiB, same speed).
    # Spinning (ONNX Runtime's default) stays on: off, the encoder on two threads was 1.07x slower.
    options.enable_cpu_mem_arena = False
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _array(tensor: torch.Tensor, dtype) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=dtype)


class OnnxEncoder:
    """Like the torch encoder on features: (speech, lengths) -> (encoder_out, lengths)."""

    def __init__(self, path: Path, threads: int = 1, *, single_thread_copy: bool = False):
        self.path, self.threads = Path(path), threads
        self.session = _session(path, threads)
        # int8: a single-threaded copy that items side by side call (None: items one after another)
        self.side_by_side_session = _session(path, 1) if single_thread_copy and threads > 1 else None

    def __call__(self, speech: torch.Tensor, lengths: torch.Tensor, *,
                 side_by_side: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        session = self.side_by_side_session if side_by_side and self.side_by_side_session is not None else self.session
        out, out_lengths = session.run(None, {"speech": _array(speech, np.float32),
                                              "speech_lengths": _array(lengths, np.int32)})
        return torch.from_numpy(out), torch.from_numpy(out_lengths).long()


class OnnxDecoder:
    """Like Paraformer.cal_decoder_with_predictor, item by item: each item's token
    log-probabilities (tokens x vocabulary).

    Item by item because the decoder is non-autoregressive: an item's tokens already make a
    matrix product of their own, so a padded batch bought little, and its logits (batch x
    longest token count x 8404, then their log-softmax) were the run's memory peak: 8 x 45 s
    of speech took 0.56 GiB over the resident set in the decoder (Paraformer-large, fp32).
    Alone, each item also runs as FunASR runs it on a CPU (a batch of one).
    """

    def __init__(self, path: Path, threads: int = 1):
        self.path = Path(path)
        self.session = _session(path, threads)

    def __call__(self, encoder_out, encoder_lens, embeds, token_num) -> list[torch.Tensor]:
        scores = []
        for i, (frames, tokens) in enumerate(zip(encoder_lens.tolist(), token_num.tolist())):
            if tokens < 1:
                scores.append(torch.empty(0, 0))
                continue
            logits, _ = self.session.run(None, {
                "encoder_out": _array(encoder_out[i: i + 1, :frames], np.float32),
                "encoder_out_lens": np.array([frames], dtype=np.int32),
                "acoustic_embeds": _array(embeds[i: i + 1, :tokens], np.float32),
                "token_num": np.array([tokens], dtype=np.int32)})
            scores.append(torch.log_softmax(torch.from_numpy(logits[0]), dim=-1))
        return scores


@dataclass
class OnnxParts:
    encoder: OnnxEncoder
    decoder: OnnxDecoder

    @classmethod
    def load(cls, paths: dict[str, Path], threads: int, *, int8: bool) -> "OnnxParts":
        return cls(OnnxEncoder(paths["encoder"], threads, single_thread_copy=int8), OnnxDecoder(paths["decoder"], threads))
