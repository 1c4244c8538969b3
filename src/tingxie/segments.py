"""Plain data passed between stages: speech spans, audio slices and recognised text."""

from __future__ import annotations

from collections import Counter
import dataclasses
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from tingxie import SAMPLE_RATE


@dataclass(frozen=True)
class SpeechSpan:
    """A stretch of speech found by the VAD, in seconds from the start of the audio."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, eq=False)
class AudioSegment:
    """One unit of recognition: the samples of a span, with its place in the file.

    A packed segment joins several speech spans with the silence between them left out; its
    parts, (offset in the samples, start in the file, length) in seconds, map times back.
    """

    index: int
    start: float
    end: float
    samples: np.ndarray  # float32, 16 kHz mono
    parts: tuple[tuple[float, float, float], ...] = ()

    @property
    def duration(self) -> float:
        """Seconds of audio in the segment (for a packed one, speech without the gaps)."""
        return len(self.samples) / SAMPLE_RATE if self.parts else self.end - self.start

    def absolute(self, offset_s: float) -> float:
        """The time in the file of a moment `offset_s` into this segment's samples."""
        if not self.parts:
            return self.start + offset_s
        part = self.parts[0]
        for candidate in self.parts:
            if candidate[0] > offset_s:
                break
            part = candidate
        at, file_start, length = part
        return file_start + min(max(offset_s - at, 0.0), length)


@dataclass(frozen=True)
class DecodeScores:
    """How the decoder judged a window's text (Whisper): the figures its guards test."""

    avg_logprob: float  # mean log-probability per token of the text kept
    no_speech_prob: float  # probability of the no-speech token at the window's start
    compression_ratio: float  # raw over zlib-compressed bytes of the text (high: repetitive)
    temperature: float  # the temperature the kept text was decoded at


@dataclass(frozen=True)
class TextSegment:
    """Recognised text with absolute times in seconds; a piece of a window, or a word.

    What the decoder knew of it rides along where the backend reports it, left out of
    equality (the text and its times are the result; these describe it)."""

    start: float
    end: float
    text: str
    scores: DecodeScores | None = field(default=None, compare=False)  # its window's, for a piece
    probability: float | None = field(default=None, compare=False)  # for a word: its tokens' mean
    speaker: str | None = None  # "Speaker 1", ... with --diarize; None without


def piece_to_json(piece: TextSegment) -> list:
    """[start, end, text], with the scores and probability after them when known (checkpoints, job stores)."""
    extra = {}
    if piece.scores is not None:
        extra["scores"] = dataclasses.asdict(piece.scores)
    if piece.probability is not None:
        extra["probability"] = piece.probability
    return [piece.start, piece.end, piece.text, extra] if extra else [piece.start, piece.end, piece.text]


def piece_from_json(record: list) -> TextSegment:
    """The TextSegment piece_to_json wrote (older records have no fourth item)."""
    start, end, text, *rest = record
    extra = rest[0] if rest else {}
    scores = DecodeScores(**extra["scores"]) if "scores" in extra else None
    return TextSegment(start, end, text, scores=scores, probability=extra.get("probability"))


@dataclass(frozen=True)
class TokenLogprob:
    """One decoded token and its log-probability under the model (Whisper: the align pass's,
    given the audio and the text before it). The raw bytes: a token may end inside a character."""

    bytes: bytes
    logprob: float

    @property
    def token(self) -> str:
        return self.bytes.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class SegmentResult:
    """What a backend returns for one AudioSegment: its index and the text pieces in it."""

    index: int
    pieces: tuple[TextSegment, ...]
    language: str | None = None
    tokens: tuple[int, ...] = ()
    words: tuple[TextSegment, ...] = ()  # timed words, when the backend aligns them (Whisper with timestamps)
    logprobs: tuple[TokenLogprob, ...] = ()  # its text's tokens, when asked for (DecodeOptions.token_logprobs)


@dataclass
class RunStats:
    """Figures of one run, reported in JSON output and by the benchmark."""

    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    peak_rss_bytes: int = 0
    batches: int = 0
    segments: int = 0
    oom_retries: int = 0
    padding_waste: float = 0.0  # share of the seconds the batches computed on that was padding
    # the adaptive budget (memory/planning.py): times batches had to shrink below what the budget
    # allowed because the device had less free, and the least memory a window was planned with
    budget_shrinks: int = 0
    lowest_batch_memory_bytes: int | None = None

    @property
    def speed(self) -> float:
        """Audio seconds per wall second (the speed multiplier)."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


@dataclass
class Transcript:
    """The full result for one input, in time order."""

    source: str
    model: str
    language: str | None
    segments: list[TextSegment] = field(default_factory=list)
    stats: RunStats = field(default_factory=RunStats)
    words: list[TextSegment] = field(default_factory=list)  # timed words, where the backend aligns them

    @property
    def text(self) -> str:
        return join_texts(s.text for s in self.segments)


def join_texts(texts) -> str:
    """Join segment texts; no space is added between CJK characters."""
    out = ""
    for piece in (t.strip() for t in texts):
        if not piece:
            continue
        if out and not (_is_cjk(out[-1]) and _is_cjk(piece[0])):
            out += " "
        out += piece
    return out


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return 0x3000 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF


def majority_language(results: Iterable[SegmentResult]) -> str | None:
    """The language most of the results were recognised in (the first seen on a tie), or None."""
    counts = Counter(result.language for result in results if result.language)
    return counts.most_common(1)[0][0] if counts else None
