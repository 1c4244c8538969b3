"""Whisper through CTranslate2 (the engine faster-whisper runs on).

Each item is one window of at most 30 s of speech (spans packed by packing.py), padded to
Whisper's fixed 30 s input. A call's windows are encoded in one call, decoded in one call, and
their words timed in one align call (a GPU takes a whole batch in one call; a CPU, below); the
language is detected per window when not given, so a file that switches language is
transcribed in each.

On a CPU the model is loaded as several single-threaded replicas, and each window of a batch
is its own call, taken by whichever replica is free (CTranslate2 releases the GIL): one thread
decodes a window as fast per window as a batch of four, a small model's decoding steps are too
small to keep two threads of one replica busy, the align pass runs on one thread whatever it is
given, and no replica waits for another's longer text (docs/benchmarks.md).
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Sequence

import ctranslate2
import numpy as np
import tokenizers
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from tingxie import SAMPLE_RATE
from tingxie.errors import OptionError
from tingxie.options import DecodeOptions, ModelOptions
from tingxie.memory.resources import usable_cpus
from tingxie.segments import AudioSegment, SegmentResult, TextSegment
from tingxie.planner.shapes import InputShape, ShapeRule
from tingxie.engine.packing import remainder, resume_point
from tingxie.backends.base import Backend, is_out_of_memory, out_of_memory
from tingxie.backends.whisper.features import LogMel
from tingxie.backends.whisper.decoding import decode_windows
from tingxie.backends.whisper.guards import UNREAD_SPEECH_S, reads_slowly, stopped_early
from tingxie.backends.whisper.logprobs import TokenBytes, token_logprobs
from tingxie.backends.whisper.timing import TimedWord, align, align_words, closes_previous, cues

WINDOW_S = 30.0
WINDOW_SAMPLES = int(WINDOW_S * SAMPLE_RATE)
MAX_DECODE_LENGTH = 448  # Whisper's text context
SAMPLING_SEED = 0  # of the decoder's sampling at temperatures above 0
MAX_CPU_REPLICAS = 4  # each replica holds its own weights and a window's activations; more threads go into each


def cpu_replicas(threads: int, requested: int = 0) -> tuple[int, int]:
    """(replicas, threads per replica) for a CPU with `threads` usable threads; `requested`
    0 chooses one single-threaded replica per thread, up to MAX_CPU_REPLICAS."""
    replicas = requested or max(1, min(threads, MAX_CPU_REPLICAS))
    return replicas, max(1, threads // replicas)


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


class WhisperBackend(Backend):
    shape = InputShape(ShapeRule.FIXED_WINDOW, max_item_s=WINDOW_S)

    def __init__(self, model_dir: Path, name: str, model: ModelOptions, decode: DecodeOptions):
        self.name = name
        self.model_path = model_dir
        self.model_options = model
        self.device = resolve_device(model.device)
        self.compute_type = resolve_compute_type(model.compute_type, self.device)
        self.threads = model.threads or usable_cpus()
        self.replicas, per_replica = cpu_replicas(self.threads, model.replicas) if self.device == "cpu" else (1, self.threads)
        # Temperature fallback samples (decoding.py). CTranslate2 seeds each of its worker
        # threads' generators, on first use, from one process-wide seed that is random unless
        # set: the same noisy file then gave other text in every process. Seeded, a run with
        # one replica is reproducible; with several, which replica samples a window (and so
        # where in its sequence) is up to CTranslate2's queue.
        ctranslate2.set_random_seed(SAMPLING_SEED)
        self._model = ctranslate2.models.Whisper(
            str(model_dir), device=self.device, compute_type=self.compute_type,
            intra_threads=per_replica, inter_threads=self.replicas,
        )
        self._windows = ThreadPoolExecutor(self.replicas, thread_name_prefix="tingxie-whisper") if self.replicas > 1 else None
        # how a batch runs, for the memory profile's key: the peak depends on it
        self.execution = f"{self.replicas} replicas, a window a call" if self._windows else "one call a batch"
        self._decode = decode
        self.multilingual = self._model.is_multilingual
        if decode.language and not self.multilingual and decode.language != "en":
            raise OptionError(f"--language {decode.language}: model {name} is English-only")
        self._hf_tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._token_bytes = TokenBytes(self._hf_tokenizer)
        self._features = LogMel(self._model.n_mels)
        base = self._tokenizer(decode.language or "en")
        self._suppress = get_suppressed_tokens(base, [-1])

    def _tokenizer(self, language: str, task: str | None = None) -> Tokenizer:
        return Tokenizer(self._hf_tokenizer, self.multilingual, task=task or self._decode.task, language=language)

    def leaner_options(self) -> ModelOptions | None:
        """Half the CPU replicas (each holds a window's activations and caches: two replicas of
        tiny.en peaked 0.45 GB where one ran in less), down to one; only where the user left
        the replica count automatic."""
        if self.device != "cpu" or self.model_options.replicas or self.replicas == 1:
            return None
        return dataclasses.replace(self.model_options, replicas=max(1, self.replicas // 2))

    def unload(self) -> None:
        if self._windows is not None:
            self._windows.shutdown(wait=True)
        self._model = None  # CTranslate2 frees the weights with the last reference, held here

    def _log_mel(self, samples: np.ndarray) -> np.ndarray:
        # Features of the real audio, zero-padded to the window in feature space. This is how
        # faster-whisper feeds CTranslate2's converted models; padding the audio instead
        # measurably hurt short Mandarin clips with the embedded base model.
        frames = self._features(samples[:WINDOW_SAMPLES])[:, :-1]
        window = np.zeros((frames.shape[0], self._features.max_frames), dtype=np.float32)
        used = min(frames.shape[1], window.shape[1])
        window[:, :used] = frames[:, :used]
        return window

    per_batch_decode = True  # language, task, prompt and temperature are read per call
    token_logprobs = True  # from the align pass (logprobs.py)

    def transcribe_batch(self, batch: Sequence[AudioSegment], decode: DecodeOptions | None = None) -> list[SegmentResult]:
        decode = decode or self._decode
        try:
            if self._windows is None or len(batch) == 1:
                return self._transcribe(batch, decode)
            return self._window_by_window(batch, decode)
        except (RuntimeError, MemoryError) as error:
            if is_out_of_memory(error):
                raise out_of_memory(error) from error
            raise

    def _window_by_window(self, batch: Sequence[AudioSegment], decode: DecodeOptions) -> list[SegmentResult]:
        calls = [self._windows.submit(self._transcribe, [item], decode) for item in batch]
        try:
            return [result for call in calls for result in call.result()]
        except BaseException:
            # The batch failed (out of memory, say): nothing of it may still run when the
            # executor retries it in halves, or the retry would meet the same memory in use.
            for call in calls:
                call.cancel()
            wait(calls)
            raise

    def _transcribe(self, batch: Sequence[AudioSegment], decode: DecodeOptions) -> list[SegmentResult]:
        features = np.stack([self._log_mel(item.samples) for item in batch])
        encoded = self._model.encode(ctranslate2.StorageView.from_array(features), to_cpu=False)
        languages = self._languages(encoded, len(batch), decode)
        tokenizers_ = [self._tokenizer(lang, decode.task) for lang in languages]

        def encoded_rows(rows: list[int]) -> ctranslate2.StorageView:
            # Windows decoded again are encoded again: a device's encoder output cannot be
            # sliced, and an encode is small beside the decoding that fallback repeats.
            return encoded if len(rows) == len(batch) else self._model.encode(
                ctranslate2.StorageView.from_array(np.ascontiguousarray(features[rows])), to_cpu=False)

        decoded = decode_windows(self._model, encoded_rows, [self._prompt(tok, decode) for tok in tokenizers_],
                                 tokenizers_, decode, max_length=MAX_DECODE_LENGTH,
                                 suppress_tokens=list(self._suppress))
        texts = [window.tokens for window in decoded]
        # One align pass serves word times and token log-probabilities alike; none without either.
        aligned = self._align(batch, encoded, texts, tokenizers_) if decode.timestamps or decode.token_logprobs else None
        timed = self._timed_pieces(batch, texts, tokenizers_, aligned if decode.timestamps else None)
        logprobs = [token_logprobs(aligned[i], texts[i], self._token_bytes) if decode.token_logprobs else ()
                    for i in range(len(batch))]
        results = [
            SegmentResult(item.index, tuple(dataclasses.replace(p, scores=window.scores) for p in pieces),
                          language=lang, tokens=tuple(window.tokens), words=words, logprobs=token_scores)
            for item, (pieces, words), lang, window, token_scores in zip(batch, timed, languages, decoded, logprobs)
        ]
        last = self._last_words(batch, encoded, texts, tokenizers_, aligned)
        unread = [i for i, word in enumerate(last) if word is not None and stopped_early(batch[i].duration, word.end)]
        if unread:
            # The decoder closed these texts with speech still unread (guards.stopped_early): the
            # rest of each, from where its text stopped, decoded together as windows of their own
            # and checked again the same way; a clean file aligns and decodes nothing more.
            rests = self._transcribe([remainder(batch[i], resume_point(batch[i], last[i].start, last[i].end))
                                      for i in unread], decode)
            for i, rest in zip(unread, rests):
                results[i] = _followed_by(results[i], rest)
        return results

    def _last_words(self, batch, encoded, texts, tokenizers_, aligned) -> list[TimedWord | None]:
        """Each window's last word, aligned (seconds into its samples: where its text ends); None
        where there is nothing to measure (no text, or less speech than could be left unread)
        and, without word times, where the text reads fast enough not to have stopped early: only
        the slow ones are aligned for it."""
        measured = [bool(text) and item.duration >= UNREAD_SPEECH_S for item, text in zip(batch, texts)]
        if aligned is None:
            measured = [wanted and reads_slowly(item.duration, len(tok.decode(text).split()))
                        for wanted, item, text, tok in zip(measured, batch, texts, tokenizers_)]
            if not any(measured):
                return [None] * len(batch)
            aligned = self._align(batch, encoded, [t if wanted else [] for t, wanted in zip(texts, measured)],
                                  tokenizers_)
        last: list[TimedWord | None] = []
        for wanted, result, text, tokenizer in zip(measured, aligned, texts, tokenizers_):
            words = align_words([result], [text], tokenizer)[0] if wanted else []
            last.append(words[-1] if words else None)
        return last

    def _align(self, batch, encoded, texts, tokenizers_) -> list:
        """Each item's align result (None for an empty text): one align call per language in
        the batch, as its start sequence names the language."""
        out: list = [None] * len(batch)
        frames = [min(len(item.samples) // 160, self._features.max_frames) for item in batch]
        for language in dict.fromkeys(tok.language_code for tok in tokenizers_):
            chosen = [i for i, tok in enumerate(tokenizers_) if tok.language_code == language]
            tokenizer = tokenizers_[chosen[0]]
            results = align(self._model, encoded, tokenizer.sot_sequence,
                            [texts[i] if i in chosen else [] for i in range(len(batch))], frames, tokenizer.eot)
            for i in chosen:
                out[i] = results[i]
        return out

    def _timed_pieces(self, batch, texts, tokenizers_, aligned):
        """Each item's (pieces, timed words); words only where aligned (timestamps on)."""
        if aligned is None:
            return [(_piece(item, 0.0, item.duration, tok.decode(text)), ())
                    for item, text, tok in zip(batch, texts, tokenizers_)]
        out: list[tuple[tuple[TextSegment, ...], tuple[TextSegment, ...]]] = []
        for item, text, tokenizer, result in zip(batch, texts, tokenizers_, aligned):
            words = align_words([result], [text], tokenizer)[0]
            starts = [at for at, _, _ in item.parts] or [0.0]
            pieces = tuple(piece for start, end, cue_text in cues(words, starts)
                           for piece in _piece(item, start, end, cue_text))
            if not pieces and text:  # no alignment: the window as one piece
                pieces = _piece(item, 0.0, item.duration, tokenizer.decode(text))
            out.append((pieces, _absolute_words(item, words)))
        return out

    def _languages(self, encoded: ctranslate2.StorageView, count: int, decode: DecodeOptions) -> list[str]:
        if not self.multilingual:
            return ["en"] * count
        if decode.language:
            return [decode.language] * count
        detected = self._model.detect_language(encoded)
        return [candidates[0][0][2:-2] for candidates in detected]  # "<|zh|>" -> "zh"

    def _prompt(self, tokenizer: Tokenizer, decode: DecodeOptions) -> list[int]:
        """The decoder's start: hotwords, then the initial prompt, as earlier text (at most half
        the text context, the hotwords kept first), then the start sequence. The same for every
        window: windows are decoded side by side, none waits for the text before it."""
        room = MAX_DECODE_LENGTH // 2 - 1
        hotwords = tokenizer.encode(" " + decode.hotwords.strip())[:room] if decode.hotwords else []
        earlier = tokenizer.encode(" " + decode.initial_prompt.strip()) if decode.initial_prompt else []
        earlier = earlier[len(earlier) - (room - len(hotwords)):] if len(hotwords) + len(earlier) > room else earlier
        prompt = [tokenizer.sot_prev] + hotwords + earlier if hotwords or earlier else []
        # No timestamp tokens: word times come from one align pass (whisper_timing.py).
        return prompt + tokenizer.sot_sequence + [tokenizer.no_timestamps]


def _absolute_words(item: AudioSegment, words: list[TimedWord]) -> tuple[TextSegment, ...]:
    """The aligned words in file time, punctuation glued to the word before it (\"you\" \".\"
    is one word \"you.\", as in the cues); times rounded as the pieces' are."""
    out: list[TextSegment] = []
    for word in words:
        start = round(item.absolute(word.start), 3)
        end = round(max(item.absolute(word.end), item.absolute(word.start)), 3)
        if out and closes_previous(word.text):
            last = out[-1]
            out[-1] = dataclasses.replace(last, end=max(last.end, end), text=last.text + word.text.strip())
        elif word.text.strip():
            out.append(TextSegment(start, end, word.text.strip(), probability=word.probability))
    return tuple(out)


def _followed_by(first: SegmentResult, rest: SegmentResult) -> SegmentResult:
    """A window's result with the result of its rest (decoded again) after it."""
    return dataclasses.replace(first, pieces=first.pieces + rest.pieces, tokens=first.tokens + rest.tokens,
                               words=first.words + rest.words, logprobs=first.logprobs + rest.logprobs)


def _piece(item: AudioSegment, start: float, end: float, text: str) -> tuple[TextSegment, ...]:
    text = text.strip()
    if not text:
        return ()
    first = item.absolute(start)
    return (TextSegment(round(first, 3), round(max(item.absolute(end), first), 3), text),)
