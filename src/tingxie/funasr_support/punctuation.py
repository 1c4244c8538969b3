"""CT-Transformer punctuation over recognised words, and sentences with their times.

The model is FunASR's CTTransformer, run by its own inference (which cuts long text into
mini-sentences of 20 words and carries an unfinished sentence over into the next); sentences are
cut where it puts a full stop, comma or question mark, as FunASR's timestamp_sentence does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..segments import TextSegment, join_texts
from .loading import load_funasr_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Word:
    """A recognised word (a character, for Chinese) with its time in seconds."""

    text: str
    start: float
    end: float


class Punctuator:
    def __init__(self, model_dir: Path, device: str = "cpu"):
        self.path = Path(model_dir)
        self._loaded = load_funasr_model(model_dir, device)

    def punctuated_text(self, text: str) -> tuple[str, list[int] | None]:
        """FunASR's punctuated text and its per-word punctuation ids (None for empty text)."""
        kwargs = dict(self._loaded.kwargs)
        with torch.inference_mode():
            results, _ = self._loaded.model.inference(data_in=[text], key=["punc"], **kwargs)
        punc_array = results[0].get("punc_array")
        ids = None if punc_array is None else [int(x) for x in punc_array]
        return results[0]["text"], ids

    def sentences(self, words: Sequence[Word]) -> list[TextSegment] | None:
        """Punctuate the words as one text and cut it into timed sentences.

        None when the punctuation model's words do not line up one to one with the recognised
        ones (FunASR then falls back to one piece per speech segment; so does the caller).
        """
        from funasr.utils.timestamp_tools import timestamp_sentence

        if not words:
            return []
        text = " ".join(w.text for w in words)
        _, punc_ids = self.punctuated_text(text)
        if punc_ids is None or len(punc_ids) != len(words):
            log.debug("punctuation ids (%s) do not match %d words", None if punc_ids is None else len(punc_ids), len(words))
            return None
        times_ms = [[round(w.start * 1000), round(w.end * 1000)] for w in words]
        found = timestamp_sentence(punc_ids, times_ms, text)
        out = [TextSegment(round(s["start"] / 1000, 3), round(s["end"] / 1000, 3), s["text"]) for s in found]
        covered = sum(len(s["timestamp"]) for s in found)
        if covered < len(words):  # words after the last punctuation mark (FunASR drops them)
            rest = words[covered:]
            out.append(TextSegment(round(rest[0].start, 3), round(rest[-1].end, 3), join_texts(w.text for w in rest)))
        return out
