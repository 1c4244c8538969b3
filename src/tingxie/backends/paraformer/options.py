"""Options of the FunASR pipeline (VAD and punctuation models) and their command-line flags.

Imports neither torch nor funasr: the CLI and tingxie.options use it in the default install.
"""

from __future__ import annotations

from dataclasses import dataclass

from tingxie.errors import OptionError

SILERO = "silero"
ENGINES = ("auto", "onnx", "torch")


@dataclass(frozen=True)
class ParaformerOptions:
    """Which helper models run around a Paraformer model.

    vad_model: "silero" (tingxie's ONNX Silero VAD, the default), "fsmn-vad", or a FunASR model
    directory. punc_model: None means ct-punc where it is on this machine (and no punctuation,
    with a warning, where it is not); a name or directory given explicitly must be found.
    punctuate False turns punctuation off (--no-punc). engine: what runs the encoder on a CPU,
    "onnx" (ONNX Runtime, the encoder exported once with FunASR's export classes), "torch", or
    "auto" (onnx for float32 and int8 on a CPU where the export succeeds, torch otherwise).
    """

    vad_model: str = SILERO
    punc_model: str | None = None
    punctuate: bool = True
    engine: str = "auto"

    def __post_init__(self) -> None:
        if not self.vad_model:
            raise OptionError("--vad-model must not be empty")
        if self.punc_model is not None and not self.punc_model:
            raise OptionError("--punc-model must not be empty")
        if not self.punctuate and self.punc_model is not None:
            raise OptionError("--no-punc and --punc-model cannot be given together")
        if self.engine not in ENGINES:
            raise OptionError(f"--engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
