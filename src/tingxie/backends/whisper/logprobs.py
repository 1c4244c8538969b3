"""Each token of a window's text with its log-probability (a server request's include[]=logprobs).

The probabilities are those of the align pass (timing.py's, the one word times use): the
decoder run once over the kept text, teacher-forced, gives each text token's probability
given the audio and the tokens before it. The decode itself does not keep them (CTranslate2
returns only a sequence's score, or every step's whole vocabulary), and a window whose text
fell back to another temperature or was cut out of a loop would not match them anyway.
"""

from __future__ import annotations

import math
from functools import lru_cache

from tingxie.segments import TokenLogprob

LOWEST_LOGPROB = math.log(1e-30)  # a probability the float rounded to 0 is still a number


@lru_cache(maxsize=1)
def _byte_of_char() -> dict[str, int]:
    """Byte-level BPE's reversible map (GPT-2's, which Whisper's tokenizer uses): each byte
    is spelled as one printable character in the vocabulary; this gives the byte back."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


class TokenBytes:
    """A token id's raw bytes, from the model's tokenizer.json vocabulary (cached per id)."""

    def __init__(self, hf_tokenizer):
        self._tokenizer = hf_tokenizer
        self._cache: dict[int, bytes] = {}

    def __call__(self, token_id: int) -> bytes:
        found = self._cache.get(token_id)
        if found is None:
            spelled = self._tokenizer.id_to_token(token_id) or ""
            table = _byte_of_char()
            found = bytes(table[ch] for ch in spelled if ch in table)
            self._cache[token_id] = found
        return found


def token_logprobs(result, tokens: list[int], token_bytes: TokenBytes) -> tuple[TokenLogprob, ...]:
    """The tokens of one window's text with their log-probabilities, from its align result."""
    if result is None or not tokens:
        return ()
    probabilities = list(result.text_token_probs)[:len(tokens)]
    return tuple(TokenLogprob(token_bytes(token), _log(probability))
                 for token, probability in zip(tokens, probabilities))


def _log(probability: float) -> float:
    return round(min(0.0, max(LOWEST_LOGPROB, math.log(probability) if probability > 0 else LOWEST_LOGPROB)), 6)
