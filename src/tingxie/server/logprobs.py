"""include[]=logprobs: the tokens of a request's text with their log-probabilities, in OpenAI's shape.

Each entry is {"token", "logprob", "bytes"} (openai-python's Transcription.Logprob and
TranscriptionTextDeltaEvent.Logprob). The tokens join to exactly the text they come with:
a window's text is stripped and windows are joined with a space (segments.join_texts), so the
first token of each window takes the join's separator in place of its own leading space.
"""

from __future__ import annotations

import re
from typing import Iterable

from tingxie.segments import SegmentResult, TokenLogprob, join_texts

_SPACE = re.compile(rb"^\s+")
_TRAILING_SPACE = re.compile(rb"\s+$")


def logprob_entries(results: Iterable[SegmentResult]) -> list[dict]:
    """The entries of the results' tokens, in order; the entries of the first k results never
    change as more follow (a stream sends only the new ones)."""
    entries: list[dict] = []
    text = ""
    for result in results:
        own = join_texts(piece.text for piece in result.pieces)
        if not own or not result.logprobs:
            text = join_texts([text, own])
            continue
        joined = join_texts([text, own])
        separator = joined[len(text):len(joined) - len(own)].encode()
        text = joined
        tokens = _trimmed(list(result.logprobs))
        if tokens:
            tokens[0] = TokenLogprob(separator + tokens[0].bytes, tokens[0].logprob)
        entries += [{"token": t.token, "logprob": t.logprob, "bytes": list(t.bytes)} for t in tokens]
    return entries


def _trimmed(tokens: list[TokenLogprob]) -> list[TokenLogprob]:
    """The window's tokens without the space before its first and after its last (a token of
    spaces only goes, as its text does)."""
    while tokens and not _SPACE.sub(b"", tokens[0].bytes):
        tokens.pop(0)
    while tokens and not _TRAILING_SPACE.sub(b"", tokens[-1].bytes):
        tokens.pop()
    if tokens:
        tokens[0] = TokenLogprob(_SPACE.sub(b"", tokens[0].bytes), tokens[0].logprob)
        tokens[-1] = TokenLogprob(_TRAILING_SPACE.sub(b"", tokens[-1].bytes), tokens[-1].logprob)
    return tokens
