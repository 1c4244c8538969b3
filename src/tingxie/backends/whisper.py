"""Whisper through CTranslate2 (the engine faster-whisper runs on), a batch per call.

Each item is one speech window of at most 30 s, padded to Whisper's fixed 30 s input. A batch
is encoded in one call and decoded in one call; the language is detected per window when not
given, so a file that switches language is transcribed in each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import ctranslate2
import numpy as np
import tokenizers
from faster_whisper.feature_extractor import FeatureExtractor
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from .. import SAMPLE_RATE
from ..errors import OptionError
from ..options import DecodeOptions, ModelOptions
from ..resources import usable_cpus
from ..segments import AudioSegment, SegmentResult, TextSegment
from ..shapes import InputShape, ShapeRule
from .base import BackendOutOfMemory

WINDOW_S = 30.0
WINDOW_SAMPLES = int(WINDOW_S * SAMPLE_RATE)
SECONDS_PER_TIMESTAMP = 0.02
MAX_DECODE_LENGTH = 448  # Whisper's text context
MAX_TAIL_ROUNDS = 3  # decode passes per window, counting the first
MIN_TAIL_S = 0.5  # less audio than this after Whisper stopped is not decoded again


def resolve_device(requested: str) -> str:
    if requested != "auto":
        return requested
    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def resolve_compute_type(requested: str, device: str) -> str:
    # int8 is CTranslate2's fastest CPU path; float16 the usual GPU one. The user's choice
    # is checked against what this device really supports rather than silently degraded.
    if requested in ("default", "auto"):
        return "int8" if device == "cpu" else "float16"
    supported = ctranslate2.get_supported_compute_types(device)
    if requested not in supported:
        raise OptionError(
            f"--compute-type {requested} is not supported on {device}; choose one of {', '.join(sorted(supported))}"
        )
    return requested


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    message = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in message or "bad_alloc" in message)


class WhisperBackend:
    shape = InputShape(ShapeRule.FIXED_WINDOW, max_item_s=WINDOW_S)

    def __init__(self, model_dir: Path, name: str, model: ModelOptions, decode: DecodeOptions):
        self.name = name
        self.model_path = model_dir
        self.device = resolve_device(model.device)
        self.compute_type = resolve_compute_type(model.compute_type, self.device)
        self.threads = model.threads or usable_cpus()
        self._model = ctranslate2.models.Whisper(
            str(model_dir), device=self.device, compute_type=self.compute_type,
            intra_threads=self.threads, inter_threads=1,
        )
        self._decode = decode
        self.multilingual = self._model.is_multilingual
        if decode.language and not self.multilingual and decode.language != "en":
            raise OptionError(f"--language {decode.language}: model {name} is English-only")
        self._hf_tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._features = FeatureExtractor(feature_size=self._model.n_mels)
        base = self._tokenizer(decode.language or "en")
        self._suppress = get_suppressed_tokens(base, [-1])

    def _tokenizer(self, language: str) -> Tokenizer:
        return Tokenizer(self._hf_tokenizer, self.multilingual, task=self._decode.task, language=language)

    def _log_mel(self, samples: np.ndarray) -> np.ndarray:
        # Features of the real audio, zero-padded to the window in feature space. This is how
        # faster-whisper feeds CTranslate2's converted models; padding the audio instead
        # measurably hurt short Mandarin clips with the embedded base model.
        frames = self._features(samples[:WINDOW_SAMPLES])[:, :-1]
        window = np.zeros((frames.shape[0], self._features.nb_max_frames), dtype=np.float32)
        used = min(frames.shape[1], window.shape[1])
        window[:, :used] = frames[:, :used]
        return window

    def transcribe_batch(self, batch: Sequence[AudioSegment]) -> list[SegmentResult]:
        try:
            return self._transcribe(batch)
        except (RuntimeError, MemoryError) as error:
            if is_out_of_memory(error):
                raise BackendOutOfMemory(str(error)) from error
            raise

    def _transcribe(self, batch: Sequence[AudioSegment]) -> list[SegmentResult]:
        pieces: dict[int, list[TextSegment]] = {item.index: [] for item in batch}
        languages: dict[int, str] = {}
        tokens: dict[int, list[int]] = {item.index: [] for item in batch}
        pending = list(batch)
        # Whisper may stop early, closing its last piece and opening another with no text
        # (two timestamps in a row): it expects to be called again from there, as sequential
        # decoding does. Decode those tails again, as a batch, instead of dropping them.
        for _ in range(MAX_TAIL_ROUNDS):
            tails = []
            for item, (language, tokenizer, ids) in zip(pending, self._decode_pass(pending)):
                languages.setdefault(item.index, language)
                tokens[item.index] += ids
                pieces[item.index] += self._pieces(item, ids, tokenizer)
                resume_at = self._resume_point(ids, tokenizer, item.duration)
                if resume_at is not None:
                    first = int(resume_at * SAMPLE_RATE)
                    tails.append(AudioSegment(item.index, item.start + resume_at, item.end, item.samples[first:]))
            if not tails:
                break
            pending = tails
        return [
            SegmentResult(item.index, tuple(pieces[item.index]), language=languages[item.index],
                          tokens=tuple(tokens[item.index]))
            for item in batch
        ]

    def _decode_pass(self, items: Sequence[AudioSegment]) -> list[tuple[str, Tokenizer, list[int]]]:
        features = np.stack([self._log_mel(item.samples) for item in items])
        encoded = self._model.encode(ctranslate2.StorageView.from_array(features), to_cpu=False)
        languages = self._languages(encoded, len(items))
        tokenizers_ = [self._tokenizer(lang) for lang in languages]
        results = self._model.generate(
            encoded,
            [self._prompt(tok) for tok in tokenizers_],
            beam_size=self._decode.beam_size,
            max_length=MAX_DECODE_LENGTH,
            suppress_blank=True,
            suppress_tokens=list(self._suppress),
            sampling_temperature=self._decode.temperature or 1.0,
            sampling_topk=0 if self._decode.temperature else 1,
        )
        return [(lang, tok, list(result.sequences_ids[0])) for lang, tok, result in zip(languages, tokenizers_, results)]

    @staticmethod
    def _resume_point(tokens: list[int], tokenizer: Tokenizer, duration: float) -> float | None:
        first_ts = tokenizer.timestamp_begin
        if len(tokens) < 2 or tokens[-1] < first_ts or tokens[-2] < first_ts:
            return None
        at = (tokens[-1] - first_ts) * SECONDS_PER_TIMESTAMP
        return at if duration - at >= MIN_TAIL_S else None

    def _languages(self, encoded: ctranslate2.StorageView, count: int) -> list[str]:
        if not self.multilingual:
            return ["en"] * count
        if self._decode.language:
            return [self._decode.language] * count
        detected = self._model.detect_language(encoded)
        return [candidates[0][0][2:-2] for candidates in detected]  # "<|zh|>" -> "zh"

    def _prompt(self, tokenizer: Tokenizer) -> list[int]:
        prompt: list[int] = []
        if self._decode.initial_prompt:
            prompt += [tokenizer.sot_prev] + tokenizer.encode(" " + self._decode.initial_prompt.strip())
            prompt = prompt[-(MAX_DECODE_LENGTH // 2 - 1):]
        prompt += tokenizer.sot_sequence
        if not self._decode.timestamps:
            prompt.append(tokenizer.no_timestamps)
        return prompt

    def _pieces(self, item: AudioSegment, tokens: list[int], tokenizer: Tokenizer) -> tuple[TextSegment, ...]:
        """Split decoded tokens at timestamp tokens into timed pieces of text."""
        first_ts = tokenizer.timestamp_begin
        duration = item.duration
        pieces: list[TextSegment] = []
        text_tokens: list[int] = []
        opened_at = 0.0
        for token in tokens:
            if token < first_ts:
                if token < tokenizer.eot:
                    text_tokens.append(token)
                continue
            at = min((token - first_ts) * SECONDS_PER_TIMESTAMP, duration)
            if text_tokens:
                self._add_piece(pieces, item.start, opened_at, at, text_tokens, tokenizer)
                text_tokens = []
            opened_at = at
        if text_tokens:  # text after the last timestamp runs to the end of the window
            self._add_piece(pieces, item.start, opened_at, duration, text_tokens, tokenizer)
        return tuple(pieces)

    @staticmethod
    def _add_piece(pieces, offset, start, end, tokens, tokenizer) -> None:
        text = tokenizer.decode(tokens).strip()
        if text:
            pieces.append(TextSegment(round(offset + start, 3), round(offset + max(end, start), 3), text))
