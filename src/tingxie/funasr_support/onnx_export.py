"""Export a FunASR model's encoder to ONNX with FunASR's own export classes, once, in a child.

FunASR's export (funasr.utils.export_utils) wraps each part of a model in the class its
registry names "<part>Export" (SANMEncoderExport for Paraformer's encoder) and hands it to
torch.onnx.export; its int8 model is onnxruntime's dynamic quantization of the MatMuls. tingxie
does the same for the encoder alone, the part it runs through ONNX Runtime, and keeps the rest
of the model in torch. Two choices differ from FunASR's export, both measured:
* the TorchScript exporter (dynamo=False): torch >= 2.9 defaults to the dynamo exporter, which
  needs onnxscript and does not trace these modules;
* int8 weights signed (QInt8): onnxruntime's u8 x s8 kernels (VNNI, AMX) ran Paraformer-large's
  encoder 3.3x faster here than FunASR's u8 x u8 choice, at the same error.

Exporting reads every weight and builds a graph beside them, so it runs in a child process:
the transcribing process never holds that memory. The result is checked against the torch
encoder (fp32: relative error under 1e-4) before it is written, and cached under
TINGXIE_CACHE_DIR/onnx by the checkpoint's identity and the library versions.

    python -m tingxie.funasr_support.onnx_export MODEL_DIR OUT_DIR [--int8]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import TingxieError

EXPORT_VERSION = 1  # bump when the exported graph changes
FP32_FILE = "encoder.onnx"
INT8_FILE = "encoder.int8.onnx"
MAX_FP32_ERROR = 1e-4  # the exported fp32 encoder against torch's, relative (measured ~1e-7)

log = logging.getLogger(__name__)


class ExportError(TingxieError):
    """The encoder could not be exported or did not match torch's."""


def export_dir(model_dir: Path, checkpoint: Path) -> Path:
    """The cache folder of a model's exported encoder: one per checkpoint and library versions."""
    import onnxruntime
    import torch

    from ..models import cache_dir

    stat = Path(checkpoint).stat()
    identity = json.dumps([str(Path(checkpoint).resolve()), stat.st_size, stat.st_mtime_ns, EXPORT_VERSION,
                           torch.__version__, onnxruntime.__version__, _funasr_version()])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return cache_dir() / "onnx" / f"{Path(model_dir).name}-{digest}"


def exported_encoder(model_dir: Path, checkpoint: Path, *, int8: bool) -> Path:
    """The path of the model's exported encoder (int8 or fp32), exporting it first if needed."""
    folder = export_dir(model_dir, checkpoint)
    target = folder / (INT8_FILE if int8 else FP32_FILE)
    if target.is_file():
        return target
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        if (folder / FP32_FILE).is_file():  # the fp32 export is where int8 starts
            shutil.copy2(folder / FP32_FILE, staging / FP32_FILE)
        command = [sys.executable, "-m", __name__, str(model_dir), str(staging)] + (["--int8"] if int8 else [])
        log.info("exporting %s's encoder to ONNX (once; cached in %s)", model_dir, folder)
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            raise ExportError(f"exporting the encoder of {model_dir} to ONNX failed: "
                              f"{lines[-1] if lines else 'exit status ' + str(done.returncode)}")
        folder.mkdir(exist_ok=True)
        for name in (FP32_FILE, INT8_FILE):
            if (staging / name).is_file() and not (folder / name).is_file():
                os.replace(staging / name, folder / name)  # atomic: a reader sees all or nothing
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _funasr_version() -> str:
    try:
        from importlib.metadata import version

        return version("funasr")
    except Exception:  # noqa: BLE001 - only part of a cache key
        return "unknown"


# --- the child ---------------------------------------------------------------------------------

def _export_fp32(model_dir: Path, out: Path) -> None:
    import torch

    with contextlib.redirect_stdout(io.StringIO()):
        from funasr.register import tables

    from .loading import load_funasr_model

    asr = load_funasr_model(model_dir, "cpu")
    name = asr.kwargs.get("encoder")
    export_class = tables.encoder_classes.get(f"{name}Export") if name else None
    if export_class is None:
        raise ExportError(f"FunASR has no ONNX export class for the encoder {name!r}")
    feats = int(asr.kwargs.get("input_size") or 560)
    # the export class swaps the encoder's layers for export ones in place: wrap a copy, so the
    # model's own encoder stays what the check below compares with
    wrapper = export_class(copy.deepcopy(asr.model.encoder), onnx=True).eval()
    speech = torch.randn(2, 30, feats)
    lengths = torch.tensor([6, 30], dtype=torch.int32)  # FunASR's own dummy: one padded item
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            wrapper, (speech, lengths), str(out), dynamo=False, opset_version=14, do_constant_folding=True,
            input_names=["speech", "speech_lengths"], output_names=["encoder_out", "encoder_out_lens"],
            dynamic_axes={"speech": {0: "batch", 1: "frames"}, "speech_lengths": {0: "batch"},
                          "encoder_out": {0: "batch", 1: "frames"}, "encoder_out_lens": {0: "batch"}},
        )
    _check_against_torch(asr.model, out, feats)


def _check_against_torch(model, path: Path, feats: int) -> None:
    import numpy as np
    import torch

    from .onnx_encoder import OnnxEncoder

    session = OnnxEncoder(path)
    generator = torch.Generator().manual_seed(0)
    for frames in (7, 173):  # shapes other than the traced one
        speech = torch.randn(1, frames, feats, generator=generator)
        lengths = torch.tensor([frames], dtype=torch.int32)
        with torch.inference_mode():
            expected = model.encode(speech, lengths)[0]
        got, _ = session(speech, lengths)
        error = float(np.linalg.norm((got - expected).numpy()) / max(np.linalg.norm(expected.numpy()), 1e-12))
        if not error < MAX_FP32_ERROR:
            raise ExportError(f"the exported encoder differs from torch's: relative error {error:.2e} at {frames} frames")


def _quantize_int8(fp32: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs a line per node
    quantize_dynamic(model_input=str(fp32), model_output=str(out), op_types_to_quantize=["MatMul"],
                     per_channel=True, reduce_range=False, weight_type=QuantType.QInt8)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="export a FunASR model's encoder to ONNX")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--int8", action="store_true", help="also write the int8 (dynamic quantization) model")
    args = parser.parse_args(argv)
    fp32 = args.out_dir / FP32_FILE
    try:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        if not fp32.is_file():
            _export_fp32(args.model_dir, fp32)
        if args.int8:
            _quantize_int8(fp32, args.out_dir / INT8_FILE)
    except Exception as error:  # noqa: BLE001 - the parent reports the last line
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
