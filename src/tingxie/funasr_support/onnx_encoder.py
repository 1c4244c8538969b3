"""A Paraformer encoder exported to ONNX (funasr_support.onnx_export), run by ONNX Runtime.

On this CPU (2 cores, AVX512-VNNI, AMX) ONNX Runtime ran Paraformer-large's encoder on a 15 s
segment in 0.69 s on one thread against torch's 0.92 s (fp32, same output to 1e-7), and its
int8 model (s8 weights) in 0.19 s against torch's dynamic int8 0.43 s, at half torch's error
(docs/benchmarks.md). The session is single-threaded and safe to call from several threads at
once: items of a batch run side by side, one a thread, which measured faster than one item at
a time on two threads (ONNX Runtime's per-op thread barriers, as in funasr_support.parallel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class OnnxEncoder:
    """Callable like the torch encoder on features: (speech, lengths) -> (encoder_out, lengths)."""

    def __init__(self, path: Path, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle ONNX Runtime threads spin by default, taking the cores torch's predictor and
        # decoder need right after the encoder
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.path = Path(path)
        self.threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, speech: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, out_lengths = self.session.run(None, {
            "speech": np.ascontiguousarray(speech.detach().cpu().numpy(), dtype=np.float32),
            "speech_lengths": lengths.detach().cpu().numpy().astype(np.int32),
        })
        return torch.from_numpy(out), torch.from_numpy(out_lengths).long()
