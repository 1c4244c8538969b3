"""Tests that tell a trustworthy window of text from one Whisper made up or got stuck in.

Whisper's decoder, given audio it cannot read (telephone-band speech, noise, music), tends to
fall into a loop ("the the the ...", one sentence twenty times) or to write fluent text that
nobody said. faster-whisper and openai-whisper judge each window by three figures, with these
defaults: a text that compresses too well is a loop (zlib ratio above 2.4); a low average
log-probability per token is a guess (below -1.0); a high probability of the no-speech token
with a low log-probability is silence (above 0.6). A window that fails is decoded again at a
higher temperature; one that reads as silence is dropped. A repeated-block check on the words
is the last line of defence for a loop that survives every temperature.

A fourth failure has no score: the decoder closes the text while the window still holds
speech (a pause inside a window of packed spans reads as the end). faster-whisper's sequential
decoding seeks to where the text stopped and goes on; here the aligned end of the text is
compared with the speech the window holds, and a window with much of it unread has the rest
decoded again as a window of its own (stopped_early).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Hashable, Sequence

MAX_REPEATS = 4  # a block of words may come this many times in a row; one more is a loop
# Speech a window may hold after its text's aligned last word. On real_en_long, clean and over
# a telephone line, a window's text ends within 0.5 s of its speech, except the windows that
# stopped early (19 s unread); a trailing pad or a cough stays under this.
UNREAD_SPEECH_S = 3.0
# Without word times the text's end is not measured for every window: only a window read at
# fewer words a second than this is aligned to find it (read speech runs at 2.5-3.5).
SLOW_WORDS_PER_S = 2.5


def compression_ratio(text: str) -> float:
    """Raw bytes over zlib-compressed bytes of the text, as Whisper computes it (high: repetitive)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


@dataclass(frozen=True)
class Thresholds:
    """The three limits; None turns a test off."""

    compression_ratio: float | None = 2.4
    log_prob: float | None = -1.0
    no_speech: float | None = 0.6

    def is_silence(self, avg_logprob: float, no_speech_prob: float) -> bool:
        """The no-speech token is likely and the text is not confidently read: nothing was said.
        A confident text keeps its window whatever the no-speech probability (faster-whisper's rule)."""
        if self.no_speech is None or no_speech_prob <= self.no_speech:
            return False
        return self.log_prob is None or avg_logprob <= self.log_prob

    def needs_fallback(self, avg_logprob: float, no_speech_prob: float, ratio: float) -> bool:
        """The window should be decoded again at the next temperature."""
        too_repetitive = self.compression_ratio is not None and ratio > self.compression_ratio
        too_unsure = self.log_prob is not None and avg_logprob < self.log_prob
        if too_unsure and self.is_silence(avg_logprob, no_speech_prob):
            return False  # silence: dropped, not decoded again
        return too_repetitive or too_unsure


def stopped_early(held_s: float, text_end_s: float, unread_s: float = UNREAD_SPEECH_S) -> bool:
    """The window's text ends (its last word's aligned end, seconds into the window) with at
    least `unread_s` of the `held_s` seconds of speech it holds still after it. A text that ends
    within its first second barely started: the rest would be the same window again."""
    return text_end_s >= 1.0 and held_s - text_end_s >= unread_s


def reads_slowly(held_s: float, words: int, words_per_s: float = SLOW_WORDS_PER_S) -> bool:
    """Fewer words than `held_s` of speech is read at: its text may have stopped early."""
    return words < words_per_s * held_s


def first_loop(keys: Sequence[Hashable], max_repeats: int = MAX_REPEATS) -> tuple[int, int, int] | None:
    """The earliest block that comes more than max_repeats times in a row, as (start, length of
    the block, copies in a row); the shortest block where several start together; None if none."""
    best: tuple[int, int, int] | None = None
    for period in range(1, len(keys) // (max_repeats + 1) + 1):
        run = 0  # positions so far where keys[i] == keys[i + period]
        for i in range(len(keys) - period):
            if keys[i] == keys[i + period]:
                run += 1
                copies = (run + period) // period
                start = i + 1 - run
                if copies > max_repeats and (best is None or start < best[0]):
                    # extend to the end of this run before recording it
                    j = i + 1
                    while j < len(keys) - period and keys[j] == keys[j + period]:
                        j += 1
                    best = (start, period, (j - start + period) // period)
                    break
            else:
                run = 0
    return best


def longest_repeat(keys: Sequence[Hashable]) -> int:
    """The most copies in a row of any block of keys (1 when nothing repeats): a loop measure."""
    most = 1 if keys else 0
    for period in range(1, len(keys) // 2 + 1):
        run = 0
        for i in range(len(keys) - period):
            run = run + 1 if keys[i] == keys[i + period] else 0
            most = max(most, (run + period) // period)
    return most


def without_loops(words: Sequence[Sequence[int]], texts: Sequence[str],
                  max_repeats: int = MAX_REPEATS) -> list[int]:
    """The tokens of `words` (each word's tokens, its text beside it) with every run of more
    than max_repeats copies of a block of words cut to one copy; the text after a loop stays."""
    keys = [text.strip().lower() for text in texts]
    kept: list[int] = []
    start = 0
    while True:
        loop = first_loop(keys[start:], max_repeats)
        if loop is None:
            kept.extend(t for word in words[start:] for t in word)
            return kept
        at, period, copies = loop
        kept.extend(t for word in words[start:start + at + period] for t in word)
        start += at + period * copies
