"""A Paraformer's encoder and decoder exported to ONNX (funasr_support.onnx_export), run by ONNX Runtime.

On this CPU (2 cores, AVX512-VNNI, AMX) ONNX Runtime ran Paraformer-large's encoder on a 15 s
segment in 0.69 s on one thread against torch's 0.92 s (fp32, same output to 1e-7), and its
int8 model (s8 weights) in 0.19 s against torch's dynamic int8 0.43 s, at half torch's error
(docs/benchmarks.md). A batch's items go through the encoder side by side, each alone (as
FunASR runs them). Sessions are safe to call from several threads at once:
* fp32: one session on all threads, shared by the items side by side. A single-threaded session
  ran budget-limited plans (mostly one-item batches) 1.45x slower, and a second copy of the
  weights (0.6 GiB) does not fit the budgets fp32 is run under.
* int8: a single-threaded session for items side by side (0.089 s an item against 0.12 on a
  shared two-thread session, 15 s items) and one on all threads for a batch of one item; the
  second copy costs about 0.25 GiB.
The decoder runs a whole padded batch (its masks keep items apart) on all threads.
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
    # idle ONNX Runtime threads spin by default, taking the cores torch's predictor needs next
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    # no arena: ONNX Runtime's arena keeps its largest batch's buffers for the process's life
    # (measured: peak 2.20 -> 2.10 GiB, resident after a run 1.91 -> 1.58 GiB, same speed)
    options.enable_cpu_mem_arena = False
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _array(tensor: torch.Tensor, dtype) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=dtype)


class OnnxEncoder:
    """Like the torch encoder on features: (speech, lengths) -> (encoder_out, lengths)."""

    def __init__(self, path: Path, threads: int = 1, *, single_thread_copy: bool = False):
        self.path, self.threads = Path(path), threads
        self.session = _session(path, threads)
        # what items running side by side call: a single-threaded copy, or the shared session
        self.side_by_side_session = _session(path, 1) if single_thread_copy and threads > 1 else self.session

    def __call__(self, speech: torch.Tensor, lengths: torch.Tensor, *,
                 side_by_side: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        session = self.side_by_side_session if side_by_side else self.session
        out, out_lengths = session.run(None, {"speech": _array(speech, np.float32),
                                              "speech_lengths": _array(lengths, np.int32)})
        return torch.from_numpy(out), torch.from_numpy(out_lengths).long()


class OnnxDecoder:
    """Like Paraformer.cal_decoder_with_predictor: token log-probabilities for a padded batch."""

    def __init__(self, path: Path, threads: int = 1):
        self.path, self.threads = Path(path), threads
        self.session = _session(path, threads)

    def __call__(self, encoder_out, encoder_lens, embeds, token_num) -> torch.Tensor:
        logits, _ = self.session.run(None, {
            "encoder_out": _array(encoder_out, np.float32), "encoder_out_lens": _array(encoder_lens, np.int32),
            "acoustic_embeds": _array(embeds, np.float32), "token_num": _array(token_num, np.int32)})
        return torch.log_softmax(torch.from_numpy(logits), dim=-1)


@dataclass
class OnnxParts:
    encoder: OnnxEncoder
    decoder: OnnxDecoder

    @classmethod
    def load(cls, paths: dict[str, Path], threads: int, *, int8: bool) -> "OnnxParts":
        return cls(OnnxEncoder(paths["encoder"], threads, single_thread_copy=int8), OnnxDecoder(paths["decoder"], threads))
