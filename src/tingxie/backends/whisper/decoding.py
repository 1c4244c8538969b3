"""Batched decoding with temperature fallback, window by window.

Every window of a call is decoded at the first temperature in one generate call. Only the
windows that fail a guard (guards.py) are decoded again, together, at the next temperature,
and so on down the list; a clean batch costs one call, as without guards. At a temperature
above 0 the decoder samples (beam 1, BEST_OF samples, the most likely kept), as faster-whisper
does. A window that fails at every temperature keeps its most likely text among those that
were not loops. Windows that read as silence are emptied, and a loop that survived every
temperature is cut to one copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import ctranslate2

from tingxie.options import DecodeOptions
from tingxie.segments import DecodeScores
from tingxie.backends.whisper.guards import Thresholds, compression_ratio, without_loops

BEST_OF = 5  # samples drawn at a temperature above 0 (faster-whisper's default)


@dataclass(frozen=True)
class DecodedWindow:
    tokens: list[int]  # text tokens, no special tokens; empty when the window reads as silence
    scores: DecodeScores
    attempts: int  # generate calls this window took (1: the first temperature passed)


def thresholds(decode: DecodeOptions) -> Thresholds:
    return Thresholds(decode.compression_ratio_threshold, decode.log_prob_threshold, decode.no_speech_threshold)


def decode_windows(model: ctranslate2.models.Whisper, encoded_rows: Callable[[list[int]], ctranslate2.StorageView],
                   prompts: Sequence[list[int]], tokenizers_: Sequence, decode: DecodeOptions, *,
                   max_length: int, suppress_tokens: list[int]) -> list[DecodedWindow]:
    """The text of each window. encoded_rows(rows) gives the encoder output of those windows
    (all of them: the output already computed)."""
    limits = thresholds(decode)
    tried: list[list[tuple[list[int], DecodeScores]]] = [[] for _ in prompts]
    pending = list(range(len(prompts)))
    for temperature in decode.temperature:
        if not pending:
            break
        sampling = temperature > 0
        results = model.generate(
            encoded_rows(pending), [prompts[row] for row in pending],
            beam_size=1 if sampling else decode.beam_size,
            num_hypotheses=BEST_OF if sampling else 1,
            sampling_temperature=temperature if sampling else 1.0,
            sampling_topk=0 if sampling else 1,
            max_length=max_length, suppress_blank=True, suppress_tokens=suppress_tokens,
            return_scores=True, return_no_speech_prob=True,
        )
        failed = []
        for row, result in zip(pending, results):
            tokenizer = tokenizers_[row]
            tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
            scores = _scores(result, tokens, tokenizer, temperature)
            tried[row].append((tokens, scores))
            if limits.needs_fallback(scores.avg_logprob, scores.no_speech_prob, scores.compression_ratio):
                failed.append(row)
        pending = failed
    return [_final(attempts, row in pending, tokenizers_[row], limits) for row, attempts in enumerate(tried)]


def _scores(result, tokens: list[int], tokenizer, temperature: float) -> DecodeScores:
    # CTranslate2's score is the sum of the token log-probabilities divided by the length
    # (length_penalty 1); Whisper's average counts the end-of-text token as well.
    length = len(result.sequences_ids[0])
    avg_logprob = result.scores[0] * length / (length + 1)
    return DecodeScores(avg_logprob=round(avg_logprob, 4), no_speech_prob=round(result.no_speech_prob, 4),
                        compression_ratio=round(compression_ratio(tokenizer.decode(tokens).strip()), 4),
                        temperature=temperature)


def _final(attempts: list[tuple[list[int], DecodeScores]], all_failed: bool, tokenizer,
           limits: Thresholds) -> DecodedWindow:
    tokens, scores = attempts[-1]
    if all_failed:
        # No temperature passed: the most likely text among those that were not loops.
        not_loops = [a for a in attempts
                     if limits.compression_ratio is None or a[1].compression_ratio <= limits.compression_ratio]
        tokens, scores = max(not_loops or attempts, key=lambda a: a[1].avg_logprob)
    if limits.is_silence(scores.avg_logprob, scores.no_speech_prob):
        return DecodedWindow([], scores, len(attempts))
    words, word_tokens = tokenizer.split_to_word_tokens(tokens)
    return DecodedWindow(without_loops(word_tokens, words), scores, len(attempts))
