"""CT-Transformer punctuation over the text of a whole recording, streamed, as FunASR runs it.

FunASR's AutoModel joins the text of all speech segments and gives it to CTTransformer.inference,
which cuts the words into mini-sentences of 20 and runs the model on each with the unfinished
sentence of the one before carried in front; only the last mini-sentence is treated as the end.
That is a left-to-right walk whose only state is the carried words, so it is done here as the
segments arrive: a mini-sentence is run once 20 words and at least one more are known, and its
words up to the last full stop or question mark are settled for good. The marks, the text and
the sentences (cut after every mark, as FunASR's timestamp_sentence does) are FunASR's.

Two limits keep memory bounded where FunASR's would not be: a carry longer than MAX_CARRY
words (text with no sentence end and no comma for that long) is settled as it stands; and a
word-level model (one with a jieba dictionary) segments each speech segment's text apart, so
a word is never joined across two segments.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from tingxie.segments import SegmentResult, TextSegment
from tingxie.backends.paraformer.loading import load_funasr_model

log = logging.getLogger(__name__)

MINI_SENTENCE = 20  # CTTransformer.inference's split_size
CUT_AT_COMMA_AFTER = 200  # its cache_pop_trigger_limit
MAX_CARRY = 1000


class Punctuator:
    """The loaded CT-Transformer; stream() starts one recording's punctuation."""

    def __init__(self, model_dir: Path, device: str = "cpu"):
        self.path = Path(model_dir)
        self.loaded = load_funasr_model(model_dir, device)
        model = self.loaded.model
        self.marks = list(model.punc_list)
        self.sentence_end_id = int(model.sentence_end_id)
        self.jieba = getattr(model, "jieba_usr_dict", None)

    def stream(self) -> "PunctuationStream":
        return PunctuationStream(self)

    def predict(self, ids: Sequence[int]) -> list[int]:
        """The model's mark for each word id of one mini-sentence (with its carry)."""
        device = self.loaded.kwargs.get("device", "cpu")
        text = torch.tensor(np.asarray(ids, dtype="int32"))[None].to(device)
        lengths = torch.tensor([len(ids)], dtype=torch.int32).to(device)
        with torch.inference_mode():
            logits, _ = self.loaded.model.punc_forward(text=text, text_lengths=lengths)
        return logits.view(-1, logits.shape[-1]).topk(1, dim=1)[1][:, 0].tolist()  # as FunASR picks

    def sentences(self, results: Iterable[SegmentResult]) -> list[TextSegment]:
        """Punctuate some segments' words on their own (one text) and cut them into sentences."""
        stream = self.stream()
        return stream.push(results) + stream.finish()


@dataclass
class _Token:
    text: str  # the word as the punctuation model sees it (split_words)
    start: float
    end: float
    id: int = 0


class PunctuationStream:
    """Segments' word pieces in time order -> punctuated, timed sentences, as they settle."""

    def __init__(self, punctuator: Punctuator):
        from funasr.models.ct_transformer.utils import split_words

        self._p = punctuator
        self._split = split_words
        self._waiting: list[_Token] = []  # not yet run through the model
        self._carry: list[_Token] = []  # run, but after the last sentence end: run again
        self._sentence: list[tuple[_Token, int]] = []  # settled words of an unfinished sentence
        self._started = False

    def push(self, results: Iterable[SegmentResult]) -> list[TextSegment]:
        for result in results:
            self._waiting += self._tokens(result)
        out: list[TextSegment] = []
        while len(self._waiting) > MINI_SENTENCE:  # more follow: this is not the last one
            chunk, self._waiting = self._waiting[:MINI_SENTENCE], self._waiting[MINI_SENTENCE:]
            out += self._run(chunk, last=False)
        return out

    def finish(self) -> list[TextSegment]:
        out = self._run(self._waiting, last=True) if (self._waiting or self._carry) else []
        self._waiting = []
        return out + self._close()

    # --- words ----------------------------------------------------------------------------
    def _tokens(self, result: SegmentResult) -> list[_Token]:
        """The punctuation model's words of one segment, each timed by the recognised words it covers."""
        pieces = [p for p in result.pieces if p.text.strip()]
        if not pieces:
            return []
        text = " ".join(p.text.strip() for p in pieces)
        words = self._split(text, jieba_usr_dict=self._p.jieba)
        # each character of the text (spaces left out) belongs to one piece
        owners = [i for i, p in enumerate(pieces) for ch in p.text if not ch.isspace()]
        tokens, at = [], 0
        for word in words:
            n = len("".join(word.split()))
            first, last = owners[min(at, len(owners) - 1)], owners[min(at + n, len(owners)) - 1]
            tokens.append(_Token(word, pieces[first].start, pieces[last].end))
            at += n
        ids = self._p.loaded.tokenizer.encode([t.text for t in tokens])
        for token, token_id in zip(tokens, ids):
            token.id = int(token_id)
        return tokens

    # --- CTTransformer.inference, one mini-sentence at a time -----------------------------
    def _run(self, chunk: list[_Token], *, last: bool) -> list[TextSegment]:
        tokens = self._carry + chunk
        marks = self._p.predict([t.id for t in tokens])
        names = self._p.marks
        if not last:
            end, comma = -1, -1
            for i in range(len(marks) - 2, 1, -1):
                if names[marks[i]] in ("。", "？"):
                    end = i
                    break
                if comma < 0 and names[marks[i]] == "，":
                    comma = i
            if end < 0 and len(tokens) > CUT_AT_COMMA_AFTER and comma >= 0:
                end = comma  # the sentence is too long: cut at its last comma
                marks[end] = self._p.sentence_end_id
            if end < 0 and len(tokens) > MAX_CARRY:
                end = len(tokens) - 1  # tingxie's bound; FunASR would carry on
            self._carry = tokens[end + 1:]
            tokens, marks = tokens[: end + 1], marks[: end + 1]
        else:
            self._carry = []
        pieces = self._surface(tokens, marks)
        if last and tokens:
            pieces[-1], marks[-1] = self._final_mark(pieces[-1], marks[-1])
        out = []
        for token, mark, piece in zip(tokens, marks, pieces):
            self._sentence.append((token, piece))
            if mark > 1:  # a mark closes a sentence (timestamp_sentence)
                out += self._close()
        return out

    def _surface(self, tokens: list[_Token], marks: list[int]) -> list[str]:
        """Each word with its mark, as CTTransformer.inference writes the punctuated text."""
        names, out = self._p.marks, []
        for i, token in enumerate(tokens):
            word = token.text
            ascii_word = len(word[0].encode()) == 1
            if ascii_word and (i == 0 or names[marks[i - 1]] in ("。", "？")):
                word = word.capitalize()
            if ascii_word and (i == 0 or len(tokens[i - 1].text[0].encode()) == 1):
                word = " " + word
            mark = names[marks[i]]
            if mark != "_":
                if ascii_word:
                    mark = {"，": ",", "。": ".", "？": "?"}.get(mark, mark)
                word += mark
            out.append(word)
        return out

    def _final_mark(self, piece: str, mark: int) -> tuple[str, int]:
        """The text ends with a full stop, as FunASR ends it."""
        if piece[-1] in ("，", "、"):
            return piece[:-1] + "。", self._p.sentence_end_id
        if piece[-1] == ",":
            return piece[:-1] + ".", self._p.sentence_end_id
        if piece[-1] not in ("。", "？", ".", "?"):
            return piece + ("." if len(piece[-1].encode()) == 1 else "。"), self._p.sentence_end_id
        return piece, mark

    def _close(self) -> list[TextSegment]:
        if not self._sentence:
            return []
        text = "".join(piece for _, piece in self._sentence).strip()
        first, last = self._sentence[0][0], self._sentence[-1][0]
        self._sentence = []
        return [TextSegment(round(first.start, 3), round(last.end, 3), text)]
