"""Times for the text of a window, from the decoder's cross-attention (CTranslate2's align).

Whisper decodes each window without timestamp tokens: they cost decode steps, and with them
Whisper often closes a window early and needs the rest decoded again (a second encoder pass
of a whole window). One align pass over the decoded text is far cheaper and gives every word
a time; cues are then cut at sentence ends and at the joins between packed speech spans.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

FRAMES_PER_TOKEN_TIME = 50  # the encoder's time steps per second
SENTENCE_ENDS = tuple(".?!。？！")
PAUSES = tuple(",;:，；：、")
MIN_CUE_S = 3.0  # below this a comma or a pause between spans does not end a cue
MAX_CUE_S = 10.0
_CLOSING_BRACKETS = tuple("\"')]}”’」』》")


def closes_previous(text: str) -> bool:
    """Punctuation that belongs to the word before it, never the start of a cue. A quote or
    bracket counts only when glued to that word (no leading space: ' "' opens a quote)."""
    stripped = text.strip()
    if not stripped:
        return False
    if all(ch in SENTENCE_ENDS + PAUSES for ch in stripped):
        return True
    return not text[0].isspace() and all(ch in SENTENCE_ENDS + PAUSES + _CLOSING_BRACKETS for ch in stripped)


@dataclass(frozen=True)
class TimedWord:
    text: str
    start: float  # seconds into the window's samples
    end: float
    probability: float | None = None  # the mean of its tokens' probabilities, where the aligner gives them


def align(model, encoded, sot_sequence: list[int], texts: Sequence[list[int]], num_frames: Sequence[int],
          eot: int) -> list:
    """One align pass over each item's decoded text tokens: CTranslate2's result (alignment
    path, each text token's probability) per item, None for an empty text."""
    if not any(texts):
        return [None] * len(texts)
    # align takes the whole batch's encoder output; empty texts are aligned on one token and dropped.
    results = model.align(encoded, sot_sequence, [tokens if tokens else [eot] for tokens in texts],
                          list(num_frames), median_filter_width=7)
    return [result if tokens else None for result, tokens in zip(results, texts)]


def align_words(results: Sequence, texts: Sequence[list[int]], tokenizer) -> list[list[TimedWord]]:
    """Word times for each item's decoded text tokens from its align result (empty texts give no words)."""
    return [_words(result, tokens, tokenizer) if tokens and result is not None else []
            for result, tokens in zip(results, texts)]


def _words(result, tokens: list[int], tokenizer) -> list[TimedWord]:
    words, word_tokens = tokenizer.split_to_word_tokens(tokens + [tokenizer.eot])
    if len(word_tokens) <= 1:
        return []
    pairs = np.array(result.alignments)
    if pairs.size == 0:
        return []
    text_index, time_index = pairs[:, 0], pairs[:, 1]
    # The time at which each token starts: where the alignment path moves to a new token.
    moves = np.concatenate([[True], np.diff(text_index) != 0])
    token_times = time_index[moves] / FRAMES_PER_TOKEN_TIME
    token_bounds = np.concatenate([[0], np.cumsum([len(t) for t in word_tokens[:-1]])])
    bounds = np.minimum(token_bounds, len(token_times) - 1)
    probs = list(result.text_token_probs)  # one per text token
    return [TimedWord(word, float(token_times[a]), float(token_times[b]), _mean(probs[first:last]))
            for word, a, b, first, last in zip(words[:-1], bounds[:-1], bounds[1:], token_bounds[:-1], token_bounds[1:])]


def _mean(probabilities: list[float]) -> float | None:
    return round(float(np.mean(probabilities)), 4) if probabilities else None


def cues(words: list[TimedWord], part_starts: Sequence[float]) -> list[tuple[float, float, str]]:
    """Group words into cues of (start, end, text) in window time. A cue ends at a sentence
    end; at a comma or a pause between packed spans once it is MIN_CUE_S long; and before it
    grows past MAX_CUE_S."""
    groups: list[list[TimedWord]] = []
    for word in words:
        if groups and closes_previous(word.text):  # "you" "." stays "you." across a span join
            groups[-1].append(word)
            continue
        if groups:
            first, last = groups[-1][0], groups[-1][-1]
            # A sentence ends at "left." and at 'calm."' alike: look through closing quotes.
            tail = "".join(w.text for w in groups[-1][-2:]).rstrip().rstrip("".join(_CLOSING_BRACKETS))
            pause = tail.endswith(PAUSES) or any(last.start < p <= word.start for p in part_starts[1:])
            ends = ((tail.endswith(SENTENCE_ENDS) and last.end - first.start >= 1.0)  # not at "Mr."
                    or (pause and last.end - first.start >= MIN_CUE_S)
                    or word.end - first.start > MAX_CUE_S)
            if not ends:
                groups[-1].append(word)
                continue
        groups.append([word])
    return [(g[0].start, max(g[-1].end, g[0].start), "".join(w.text for w in g).strip()) for g in groups]
