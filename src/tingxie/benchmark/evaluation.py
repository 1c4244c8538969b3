"""Text normalisation and error rates (WER, CER) for scoring transcripts.

Both sides of a comparison must go through the same normaliser first; the rate
functions only split and count. Kept free of jiwer so the package needs no
scoring dependency (the tests check these figures against jiwer).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Hashable, Sequence

# Quotes and apostrophes that should count as the ASCII apostrophe.
_APOSTROPHES = str.maketrans({c: "'" for c in "\u2018\u2019\u201b\u02bc\u2032`\u00b4"})
# An apostrophe is kept only inside a word ("don't"); quoting ones go.
_LOOSE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")


def normalize_english(text: str) -> str:
    """Lowercase words separated by single spaces, for WER.

    NFKC folds full-width and ligature forms; curly quotes become "'"; hyphens,
    dashes and every other punctuation or symbol become a space, except an
    apostrophe inside a word. Numbers, spellings and contractions are left as
    written: "1,000" becomes "1 000" and is not matched with "one thousand".
    """
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower()
    text = "".join(" " if _is_punct_or_symbol(c) and c != "'" else c for c in text)
    text = _LOOSE_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())


def normalize_chinese(text: str) -> str:
    """Simplified characters with no punctuation, symbols or whitespace, for CER.

    Traditional characters are converted to simplified when OpenCC
    (opencc-python-reimplemented) is installed; without it the text is kept as
    is. Latin letters in mixed text are lowercased.
    """
    text = unicodedata.normalize("NFKC", text)
    converter = _t2s()
    if converter is not None:
        text = converter.convert(text)
    kept = "".join(c for c in text.lower() if not (c.isspace() or _is_punct_or_symbol(c)))
    # Removing characters can leave combining marks out of canonical order; fix that.
    return unicodedata.normalize("NFKC", kept)


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER: word edits over all pairs / reference words; text split on whitespace."""
    return _error_rate(references, hypotheses, str.split)


def character_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus CER: character edits over all pairs / reference characters (spaces count)."""
    return _error_rate(references, hypotheses, list)


def edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Levenshtein distance (unit cost insert, delete, substitute) between two sequences.

    Bit-parallel (Myers 1999, in Hyyro's form for global distance): one column of
    the DP table is held as bits of a Python int, so a step over `b` is a few
    big-int operations instead of a Python loop over `a`. Time is
    O(len(a) * len(b) / wordsize); memory is one int of min(len) bits per
    distinct element of the shorter sequence. Elements must be hashable.
    """
    if len(a) < len(b):
        a, b = b, a
    m = len(b)  # the shorter one is the bit pattern
    if m == 0:
        return len(a)
    match: dict = {}  # element -> bits of the positions in b that hold it
    for i, item in enumerate(b):
        match[item] = match.get(item, 0) | (1 << i)
    full = (1 << m) - 1
    top = 1 << (m - 1)
    plus, minus = full, 0  # vertical deltas of the current column: all +1 at first
    distance = m
    for item in a:
        eq = match.get(item, 0)
        xv = eq | minus
        xh = ((((eq & plus) + plus) & full) ^ plus) | eq
        h_plus = minus | (~(xh | plus) & full)
        h_minus = plus & xh
        if h_plus & top:
            distance += 1
        elif h_minus & top:
            distance -= 1
        # Shift in +1: the row above the first holds 0, 1, 2, ... (global distance).
        h_plus = ((h_plus << 1) | 1) & full
        h_minus = (h_minus << 1) & full
        plus = h_minus | (~(xv | h_plus) & full)
        minus = h_plus & xv
    return distance


def _error_rate(references, hypotheses, units) -> float:
    if isinstance(references, str) or isinstance(hypotheses, str):
        raise TypeError("pass lists of strings, not a single string")
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    edits = total = 0
    for ref, hyp in zip(references, hypotheses):
        ref_units = units(ref)
        edits += edit_distance(ref_units, units(hyp))
        total += len(ref_units)
    if total == 0:
        raise ValueError("the references are empty, so the error rate is undefined")
    return edits / total


def _is_punct_or_symbol(char: str) -> bool:
    return unicodedata.category(char)[0] in "PS"


@functools.lru_cache(maxsize=1)
def _t2s():
    """The OpenCC converter, built once; None when OpenCC is not installed."""
    try:
        from opencc import OpenCC
    except ImportError:
        return None
    return OpenCC("t2s")
