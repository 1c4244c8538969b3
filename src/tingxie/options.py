"""Frozen option sets, validated once when built. Nothing downstream re-interprets them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from tingxie.errors import OptionError
from tingxie.backends.paraformer.options import ParaformerOptions

DEVICES = ("auto", "cpu", "cuda")
COMPUTE_TYPES = ("default", "auto", "int8", "int8_float16", "int8_float32", "float16", "bfloat16", "float32")
TASKS = ("transcribe", "translate")
CPU_MAX_BATCH = 8
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # faster-whisper's and openai-whisper's
ACCELERATOR_MAX_BATCH = 64


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise OptionError(message)


@dataclass(frozen=True)
class ModelOptions:
    """Which model to load and how: an embedded name or a model directory."""

    name: str = "whisper-base"
    device: str = "auto"
    compute_type: str = "default"
    threads: int = 0  # 0: the CPUs this process may actually use
    replicas: int = 0  # Whisper on a CPU: model copies run side by side, threads split among them (0: automatic)
    paraformer: ParaformerOptions = field(default_factory=ParaformerOptions)  # VAD/punctuation (FunASR)

    def __post_init__(self) -> None:
        _require(bool(self.name), "--model must not be empty")
        _require(self.device in DEVICES, f"--device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        _require(
            self.compute_type in COMPUTE_TYPES,
            f"--compute-type must be one of {', '.join(COMPUTE_TYPES)}, not {self.compute_type!r}",
        )
        _require(self.threads >= 0, f"--threads must be 0 (automatic) or positive, not {self.threads}")
        _require(0 <= self.replicas <= 64, f"--replicas must be 0 (automatic) or between 1 and 64, not {self.replicas}")
        _require(isinstance(self.paraformer, ParaformerOptions), "paraformer must be a ParaformerOptions")


@dataclass(frozen=True)
class DecodeOptions:
    """How the recogniser searches for text (the subset that applies to every backend)."""

    language: str | None = None  # None: detect
    task: str = "transcribe"
    beam_size: int = 5  # faster-whisper's default; greedy (1) is faster but misreads Mandarin
    # Whisper decodes a window at the first temperature, and again at the next only where the
    # guards below fail (faster-whisper's defaults); a single number decodes once. A number
    # given is kept as a tuple of one.
    temperature: tuple[float, ...] = FALLBACK_TEMPERATURES
    initial_prompt: str | None = None
    hotwords: str | None = None  # Whisper: words to expect (names, terms), a prompt before each window
    timestamps: bool = True  # segment-level timestamps inside each window
    compression_ratio_threshold: float | None = 2.4  # above: a loop, decoded again (None: no test)
    log_prob_threshold: float | None = -1.0  # mean token log-probability below: a guess, decoded again
    no_speech_threshold: float | None = 0.6  # no-speech probability above, with a guess: silence, dropped
    # each token of the text with its log-probability (a server request's include[]=logprobs;
    # Whisper: one align pass more, as word times take); only where Backend.token_logprobs
    token_logprobs: bool = False

    def __post_init__(self) -> None:
        _require(self.task in TASKS, f"--task must be one of {', '.join(TASKS)}, not {self.task!r}")
        _require(1 <= self.beam_size <= 32, f"--beam-size must be between 1 and 32, not {self.beam_size}")
        temperatures = (self.temperature,) if isinstance(self.temperature, (int, float)) else tuple(self.temperature)
        object.__setattr__(self, "temperature", tuple(float(t) for t in temperatures))
        shown = ",".join(f"{t:g}" for t in self.temperature)
        _require(bool(self.temperature) and all(0.0 <= t <= 1.0 for t in self.temperature),
                 f"--temperature must be numbers between 0 and 1, not {shown or 'nothing'}")
        _require(self.compression_ratio_threshold is None or self.compression_ratio_threshold > 0,
                 f"--compression-ratio-threshold must be positive, not {self.compression_ratio_threshold}")
        _require(self.log_prob_threshold is None or self.log_prob_threshold <= 0,
                 f"--log-prob-threshold must be 0 or negative, not {self.log_prob_threshold}")
        _require(self.no_speech_threshold is None or 0.0 <= self.no_speech_threshold <= 1.0,
                 f"--no-speech-threshold must be between 0 and 1, not {self.no_speech_threshold}")
        _require(
            self.language is None or (self.language.isalpha() and 2 <= len(self.language) <= 8),
            f"--language must be a language code such as 'en' or 'zh', not {self.language!r}",
        )


@dataclass(frozen=True)
class VadOptions:
    """Speech detection: thresholds and the shape of the segments it emits."""

    threshold: float = 0.5
    min_speech_s: float = 0.25
    min_silence_s: float = 0.3
    speech_pad_s: float = 0.5  # Whisper reads short clips better with some context around them
    max_segment_s: float = 30.0  # longer speech is split at its quietest point
    merge_gap_s: float = 2.0  # neighbours closer than this may be merged ...
    merge_max_s: float = 30.0  # ... while the merged span stays under this

    def __post_init__(self) -> None:
        _require(0.0 < self.threshold < 1.0, f"--vad-threshold must be between 0 and 1, not {self.threshold}")
        _require(self.min_speech_s >= 0, "--vad-min-speech must not be negative")
        _require(self.min_silence_s >= 0, "--vad-min-silence must not be negative")
        _require(self.speech_pad_s >= 0, "--vad-pad must not be negative")
        _require(1.0 <= self.max_segment_s <= 600.0, f"--max-segment must be between 1 and 600 s, not {self.max_segment_s}")
        _require(self.merge_gap_s >= 0, "--merge-gap must not be negative")
        _require(self.merge_max_s <= self.max_segment_s or self.merge_max_s == 0,
                 "--merge-max must not exceed --max-segment")


def parse_batch_size(text: str) -> float | None:
    """'auto' (None: budgeted batching) or seconds of audio per batch (FunASR's batch_size_s)."""
    if text.strip() == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise OptionError(f"--batch-size-s must be 'auto' or a number of seconds, not {text!r}") from None


def parse_temperatures(text: str) -> tuple[float, ...]:
    """--temperature's value: one number, or a comma list such as 0,0.2,0.4."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise OptionError(f"--temperature must be a number or a comma list of numbers, not {text!r}") from None


@dataclass(frozen=True)
class BatchOptions:
    """How segments are grouped into batches.

    batch_size_s None means 'auto' (budgeted planning); a number selects FunASR's semantics.
    """

    batch_size_s: float | None = None
    batch_threshold_s: float | None = None
    max_batch_size: int | None = None  # None: automatic, see resolved_max_batch
    memory_budget: str | None = None  # '6GiB', '800MB', '50%', '0.5'; None: a safe share of free memory

    def __post_init__(self) -> None:
        if self.memory_budget is not None:
            from tingxie.memory.sizes import parse_memory_budget

            parse_memory_budget(self.memory_budget, free_bytes=1 << 40)  # the syntax; the size is checked at run time
        _require(self.batch_size_s is None or self.batch_size_s > 0,
                 f"--batch-size-s must be 'auto' or a positive number, not {self.batch_size_s}")
        _require(self.batch_threshold_s is None or self.batch_threshold_s > 0,
                 f"--batch-threshold-s must be positive, not {self.batch_threshold_s}")
        _require(self.max_batch_size is None or 1 <= self.max_batch_size <= 1024,
                 f"--max-batch-size must be between 1 and 1024, not {self.max_batch_size}")

    def resolved_max_batch(self, device: str) -> int:
        """The batch-size cap: the user's, or by device. On a quiet 2-core CPU (CTranslate2
        int8, tiny.en, one replica) batches of 8 ran 1.12x as fast as batches of 4 and 16 no
        faster than 8 (docs/benchmarks.md); with replicas side by side a batch is the windows
        handed out between two results, and 16 was no faster than 8 either, so 8; on a GPU
        larger batches are what buys throughput: Paraformer-large on an H100 ran 1.2x as fast
        with up to 64 items a batch as with 16 (docs/benchmarks.md), so 64. The memory budget
        may lower either."""
        if self.max_batch_size is not None:
            return self.max_batch_size
        return CPU_MAX_BATCH if device == "cpu" else ACCELERATOR_MAX_BATCH

    def batch_cap(self) -> int:
        """The cap of options already resolved for a device (Transcriber does it on load): planning
        must never fall back to another device's automatic cap."""
        if self.max_batch_size is None:
            raise ValueError("BatchOptions.max_batch_size is unresolved: call resolved_max_batch(device) first")
        return self.max_batch_size


MAX_SPEAKERS = 32


@dataclass(frozen=True)
class DiarizeOptions:
    """Who speaks when (--diarize): off by default; the number of speakers is found unless given."""

    enabled: bool = False
    speakers: int | None = None  # exactly this many
    min_speakers: int | None = None
    max_speakers: int | None = None
    # whose voice vectors: "resemblyzer" (the embedded encoder, no torch), or FunASR's CAM++
    # ("cam++", a ModelScope id or a model directory; the funasr extra)
    speaker_model: str = "resemblyzer"

    def __post_init__(self) -> None:
        _require(bool(self.speaker_model.strip()), "--spk-model must name a speaker model, not an empty string")
        _require(self.speaker_model == "resemblyzer" or self.enabled, f"--spk-model {self.speaker_model} needs --diarize")
        counts = {"--speakers": self.speakers, "--min-speakers": self.min_speakers, "--max-speakers": self.max_speakers}
        for flag, value in counts.items():
            if value is None:
                continue
            _require(self.enabled, f"{flag} {value} needs --diarize")
            _require(1 <= value <= MAX_SPEAKERS, f"{flag} must be between 1 and {MAX_SPEAKERS}, not {value}")
        _require(self.speakers is None or (self.min_speakers is None and self.max_speakers is None),
                 f"--speakers {self.speakers} already fixes the count: leave out --min-speakers/--max-speakers")
        _require(self.min_speakers is None or self.max_speakers is None or self.min_speakers <= self.max_speakers,
                 f"--min-speakers {self.min_speakers} must not exceed --max-speakers {self.max_speakers}")


@dataclass(frozen=True)
class TranscribeOptions:
    model: ModelOptions = field(default_factory=ModelOptions)
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    vad: VadOptions = field(default_factory=VadOptions)
    batch: BatchOptions = field(default_factory=BatchOptions)
    diarize: DiarizeOptions = field(default_factory=DiarizeOptions)

    def to_dict(self) -> dict:
        """Plain data (JSON), for a child process; from_dict validates it again on the way in."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TranscribeOptions":
        model = dict(data.get("model", {}))
        model["paraformer"] = ParaformerOptions(**model.get("paraformer", {}))
        return cls(model=ModelOptions(**model), decode=DecodeOptions(**data.get("decode", {})),
                   vad=VadOptions(**data.get("vad", {})), batch=BatchOptions(**data.get("batch", {})),
                   diarize=DiarizeOptions(**data.get("diarize", {})))
