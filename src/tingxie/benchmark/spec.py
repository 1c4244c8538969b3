"""What a benchmark case is: its plain-data spec (JSON round-trip to the child) and its output.

Shared by the case kinds (cases.py: tingxie and faster-whisper; funasr_case.py: FunASR) and the
runner, with no heavy import.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Callable

KINDS = ("tingxie", "fw-sequential", "fw-batched", "funasr")


@dataclass(frozen=True)
class CaseSpec:
    name: str  # the row label, unique within a benchmark
    kind: str  # one of KINDS
    audio: str
    model: str = "whisper-tiny.en"  # an embedded name or a CTranslate2 model directory
    compute_type: str = "int8"
    beam_size: int = 5
    batch_size: int = 16  # fw-batched: batch_size; tingxie: BatchOptions.max_batch_size (0: automatic)
    threads: int = 0  # 0: tingxie.memory.resources.usable_cpus()
    replicas: int = 0  # tingxie Whisper on CPU: ModelOptions.replicas (0: automatic)
    batch_size_s: float | None = None  # tingxie, funasr: FunASR's batch_size_s; None: tingxie's auto
    memory_budget: str | None = None  # tingxie auto: '1GiB', '50%' (None: its default)
    device: str = "cpu"
    timestamps: bool = True  # tingxie: word-aligned cues; False: one piece per window (as fw-batched)
    # tingxie: every model, decode and VAD option as the command line gave them (TranscribeOptions.to_dict);
    # the row's batching (batch_size_s, batch_size, memory_budget) is set over them. None: from the fields above.
    options: dict | None = None
    # tingxie: Silero's spans computed at load and run through Transcriber.transcribe_segments, as the
    # funasr kind gets them, so a comparison with FunASR leaves the VAD's time out of both sides
    given_spans: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown case kind {self.kind!r}; use one of {', '.join(KINDS)}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> CaseSpec:
        return cls(**json.loads(text))


@dataclass
class CaseOutput:
    """What one transcription produced; extra holds kind-specific figures (batches, segments)."""

    text: str
    audio_s: float
    extra: dict = field(default_factory=dict)


Run = Callable[[], CaseOutput]
