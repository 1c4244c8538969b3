"""Export a FunASR model's encoder and decoder to ONNX with FunASR's own export classes, once, in a child.

FunASR's export (funasr.utils.export_utils) wraps each part of a model in the class its
registry names "<part>Export" (SANMEncoderExport and ParaformerSANMDecoderExport for
Paraformer) and hands it to torch.onnx.export; its int8 model is onnxruntime's dynamic
quantization of the MatMuls, leaving out nodes named "output" (the vocabulary projection) as
FunASR does. tingxie exports the encoder and the decoder, the parts it runs through ONNX
Runtime, each as its own graph, and keeps the CIF predictor and timestamp head in torch (they
run per item's own length; see funasr_support.timestamp_head). Two choices differ from FunASR's
export, both measured:
* the TorchScript exporter (dynamo=False): torch >= 2.9 defaults to the dynamo exporter, which
  needs onnxscript and does not trace these modules;
* int8 weights signed (QInt8): onnxruntime's u8 x s8 kernels (VNNI, AMX) ran Paraformer-large's
  encoder 3.3x faster here than FunASR's u8 x u8 choice, at the same error.

Exporting reads every weight and builds a graph beside them, so it runs in a child process:
the transcribing process never holds that memory. Each graph is checked against torch's part
(fp32: relative error under 1e-4) before it is written, and cached under TINGXIE_CACHE_DIR/onnx
by the checkpoint's identity and the library versions.

    python -m tingxie.backends.paraformer.onnx_export MODEL_DIR OUT_DIR [--int8]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from tingxie.errors import TingxieError

EXPORT_VERSION = 2  # bump when the exported graphs change
PARTS = ("encoder", "decoder")
MAX_FP32_ERROR = 1e-4  # an exported fp32 part against torch's, relative (measured ~1e-7)


log = logging.getLogger(__name__)


def part_file(part: str, int8: bool) -> str:
    # int8 graphs made for a CPU without VNNI hold 7-bit weights (see _quantize_int8): another file
    if not int8:
        return f"{part}.onnx"
    return f"{part}.int8.onnx" if cpu_has_vnni() else f"{part}.int8-7bit.onnx"


def cpu_has_vnni() -> bool:
    """Whether ONNX Runtime's u8 x s8 products run on VNNI (AVX512-VNNI, AVX-VNNI or AMX) here.
    Without it (AVX2 only) they go through vpmaddubsw, whose 16-bit sums saturate with full
    8-bit weights: on an AVX2-only EPYC the int8 encoder's relative error was 0.20 with 8-bit
    weights, where VNNI machines measured 0.02 (tests/test_paraformer_onnx.py)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    except OSError:
        pass
    return True  # not Linux: ONNX Runtime's defaults


class ExportError(TingxieError):
    """A part could not be exported, or its graph did not match torch's."""


def export_dir(model_dir: Path, checkpoint: Path) -> Path:
    """The cache folder of a model's exported parts: one per checkpoint and library versions."""
    import onnxruntime

    from tingxie.models.cache_dir import cache_dir

    stat = Path(checkpoint).stat()
    identity = json.dumps([str(Path(checkpoint).resolve()), stat.st_size, stat.st_mtime_ns, EXPORT_VERSION,
                           torch.__version__, onnxruntime.__version__, _funasr_version()])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return cache_dir() / "onnx" / f"{Path(model_dir).name}-{digest}"


def exported_parts(model_dir: Path, checkpoint: Path, *, int8: bool) -> dict[str, Path]:
    """The paths of the model's exported encoder and decoder (int8 or fp32), exporting first if needed."""
    folder = export_dir(model_dir, checkpoint)
    targets = {part: folder / part_file(part, int8) for part in PARTS}
    if all(path.is_file() for path in targets.values()):
        return targets
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        command = [sys.executable, "-m", __name__, str(model_dir), str(staging)]
        if int8:  # quantized from the fp32 graphs, made now or found in the cache
            command += ["--int8"] + (["--fp32-from", str(folder)] if _has_fp32(folder) else [])
        # a warning, so the command line (which shows warnings only) says why it pauses
        log.warning("first use of %s: exporting its encoder and decoder to ONNX Runtime (once, about a minute "
                    "for Paraformer-large; cached in %s)", model_dir, folder)
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            raise ExportError(f"exporting the encoder and decoder of {model_dir} to ONNX failed: "
                              f"{lines[-1] if lines else 'exit status ' + str(done.returncode)}")
        folder.mkdir(exist_ok=True)
        for path in staging.iterdir():
            if not (folder / path.name).is_file():
                os.replace(path, folder / path.name)  # atomic: a reader sees all of a file or none
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return targets


def _has_fp32(folder: Path) -> bool:
    return all((folder / part_file(part, False)).is_file() for part in PARTS)


def _funasr_version() -> str:
    try:
        from importlib.metadata import version

        return version("funasr")
    except Exception:  # noqa: BLE001 - only part of a cache key
        return "unknown"


# --- the child ---------------------------------------------------------------------------------

# what each part's graph takes and gives; the axes that vary between calls
INPUTS = {"encoder": ["speech", "speech_lengths"],
          "decoder": ["encoder_out", "encoder_out_lens", "acoustic_embeds", "token_num"]}
OUTPUTS = {"encoder": ["encoder_out", "encoder_out_lens"], "decoder": ["logits", "token_num_out"]}
AXES = {"speech": {0: "batch", 1: "frames"}, "speech_lengths": {0: "batch"},
        "encoder_out": {0: "batch", 1: "frames"}, "encoder_out_lens": {0: "batch"},
        "acoustic_embeds": {0: "batch", 1: "tokens"}, "token_num": {0: "batch"},
        "logits": {0: "batch", 1: "tokens"}, "token_num_out": {0: "batch"}}


def _inputs(part: str, frames: list[int], feats: int, width: int, generator=None) -> tuple[torch.Tensor, ...]:
    """Random inputs for a part: a padded batch of items of these encoder frame counts (the
    decoder gets a quarter as many tokens as frames)."""
    lengths = torch.tensor(frames, dtype=torch.int32)
    if part == "encoder":
        return torch.randn(len(frames), max(frames), feats, generator=generator), lengths
    tokens = torch.tensor([max(1, n // 4) for n in frames], dtype=torch.int32)
    return (torch.randn(len(frames), max(frames), width, generator=generator), lengths,
            torch.randn(len(frames), int(tokens.max()), width, generator=generator), tokens)


def _export_fp32(model_dir: Path, out_dir: Path) -> None:
    from tingxie.backends.paraformer.importing import import_funasr
    from tingxie.backends.paraformer.loading import load_funasr_model

    import_funasr()
    from funasr.register import tables

    asr = load_funasr_model(model_dir, "cpu")
    feats = int(asr.kwargs.get("input_size") or 560)
    width = int(asr.model.encoder.output_size())
    for part, table in (("encoder", tables.encoder_classes), ("decoder", tables.decoder_classes)):
        name = asr.kwargs.get(part)
        export_class = table.get(f"{name}Export") if name else None
        if export_class is None:
            raise ExportError(f"FunASR has no ONNX export class for the {part} {name!r}")
        # the export class swaps the part's layers for export ones in place: wrap a copy, so the
        # model's own part stays what the check below compares with
        wrapper = export_class(copy.deepcopy(getattr(asr.model, part)), onnx=True).eval()
        if part == "decoder":
            wrapper = _DecoderLogits(wrapper)
        path = out_dir / part_file(part, False)
        names = INPUTS[part] + OUTPUTS[part]
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(wrapper, _inputs(part, [6, 30], feats, width),  # like FunASR's dummy: one padded item
                              str(path), dynamo=False, opset_version=14, do_constant_folding=True,
                              input_names=INPUTS[part], output_names=OUTPUTS[part],
                              dynamic_axes={n: AXES[n] for n in names})
        _check_against_torch(part, getattr(asr.model, part), path, feats, width)


class _DecoderLogits(torch.nn.Module):
    """FunASR's decoder export class with its output layer applied here: traced as it is, torch
    2.13's TorchScript exporter leaves that layer (held by the class twice) out of the graph,
    which then returns the hidden state."""

    def __init__(self, export: torch.nn.Module):
        super().__init__()
        self.export = export

    def forward(self, encoder_out, encoder_out_lens, acoustic_embeds, token_num):
        hidden, lengths = self.export(encoder_out, encoder_out_lens, acoustic_embeds, token_num, return_hidden=True)
        return self.export.output_layer(hidden), lengths


def _check_against_torch(part: str, module, path: Path, feats: int, width: int) -> None:
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    for frames in (7, 173):  # shapes other than the traced one
        inputs = _inputs(part, [frames], feats, width, generator)
        with torch.inference_mode():
            expected = module(*inputs)[0].numpy()
        got = session.run(None, {name: value.numpy() for name, value in zip(INPUTS[part], inputs)})[0]
        error = float(np.linalg.norm(got - expected) / max(np.linalg.norm(expected), 1e-12))
        if not error < MAX_FP32_ERROR:
            raise ExportError(f"the exported {part} differs from torch's: relative error {error:.2e} at {frames} frames")


def _quantize_int8(fp32: Path, out: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs a line per node
    # as FunASR: the vocabulary projection ("output") and the FSMN biases stay fp32
    keep = [n.name for n in onnx.load(str(fp32), load_external_data=False).graph.node
            if "output" in n.name or "bias_encoder" in n.name or "bias_decoder" in n.name]
    # 7-bit weights (reduce_range) where the CPU has no VNNI: the products cannot saturate
    quantize_dynamic(model_input=str(fp32), model_output=str(out), op_types_to_quantize=["MatMul"],
                     per_channel=True, reduce_range=not cpu_has_vnni(), weight_type=QuantType.QInt8, nodes_to_exclude=keep)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="export a FunASR model's encoder and decoder to ONNX")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--int8", action="store_true", help="also write the int8 (dynamic quantization) model")
    parser.add_argument("--fp32-from", type=Path, default=None, help="quantize the fp32 graphs found here")
    args = parser.parse_args(argv)
    try:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        fp32_dir = args.fp32_from if args.fp32_from and _has_fp32(args.fp32_from) else args.out_dir
        if not _has_fp32(fp32_dir):
            _export_fp32(args.model_dir, fp32_dir)
        if args.int8:
            for part in PARTS:
                _quantize_int8(fp32_dir / part_file(part, False), args.out_dir / part_file(part, True))
    except Exception as error:  # noqa: BLE001 - the parent reports the last line
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
