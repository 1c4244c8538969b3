"""Diarization error rate: missed speech, false alarm and speaker confusion against known turns.

DER = (missed + false alarm + confusion) / reference speech, all in seconds, outside a collar
around every reference boundary (0.25 s each side by default, as in the NIST scoring: a boundary
is not known to better than that). Hypothesis speakers are matched one-to-one to reference
speakers so that the time they share is largest; overlapping speech is counted per speaker.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Hashable, Sequence

Turn = tuple[float, float, Hashable]  # (start, end, speaker)
COLLAR_S = 0.25


@dataclass(frozen=True)
class DiarizationScore:
    reference_s: float
    missed_s: float
    false_alarm_s: float
    confusion_s: float
    reference_speakers: int
    found_speakers: int

    @property
    def der(self) -> float:
        errors = self.missed_s + self.false_alarm_s + self.confusion_s
        return errors / self.reference_s if self.reference_s > 0 else 0.0


def _intervals(reference: Sequence[Turn], hypothesis: Sequence[Turn], collar: float):
    """Elementary intervals (start, end, reference speakers, hypothesis speakers), collars removed."""
    cuts = {t for start, end, _ in [*reference, *hypothesis] for t in (start, end)}
    excluded = []
    for start, end, _ in reference:
        for boundary in (start, end):
            excluded.append((boundary - collar, boundary + collar))
            cuts.update((boundary - collar, boundary + collar))
    points = sorted(cuts)
    for left, right in zip(points, points[1:]):
        if right - left <= 1e-9:
            continue
        middle = (left + right) / 2
        if any(a < middle < b for a, b in excluded):
            continue
        ref = frozenset(s for start, end, s in reference if start < middle < end)
        hyp = frozenset(s for start, end, s in hypothesis if start < middle < end)
        if ref or hyp:
            yield right - left, ref, hyp


def score(reference: Sequence[Turn], hypothesis: Sequence[Turn], collar: float = COLLAR_S) -> DiarizationScore:
    pieces = list(_intervals(reference, hypothesis, collar))
    ref_speakers = sorted({s for _, _, s in reference}, key=str)
    hyp_speakers = sorted({s for _, _, s in hypothesis}, key=str)
    shared = {(r, h): 0.0 for r in ref_speakers for h in hyp_speakers}
    reference_s = missed = false_alarm = 0.0
    for length, ref, hyp in pieces:
        reference_s += length * len(ref)
        missed += length * max(0, len(ref) - len(hyp))
        false_alarm += length * max(0, len(hyp) - len(ref))
        for r in ref:
            for h in hyp:
                shared[r, h] += length
    matched = _best_matching(ref_speakers, hyp_speakers, shared)
    both = sum(length * min(len(ref), len(hyp)) for length, ref, hyp in pieces)
    return DiarizationScore(reference_s, missed, false_alarm, both - matched,
                            len(ref_speakers), len(hyp_speakers))


def _best_matching(refs, hyps, shared) -> float:
    """The most time a one-to-one speaker mapping can share (exhaustive; few speakers)."""
    if not refs or not hyps:
        return 0.0
    if len(hyps) > len(refs):
        best = 0.0
        for chosen in itertools.permutations(hyps, len(refs)):
            best = max(best, sum(shared[r, h] for r, h in zip(refs, chosen)))
        return best
    best = 0.0
    for chosen in itertools.permutations(refs, len(hyps)):
        best = max(best, sum(shared[r, h] for r, h in zip(chosen, hyps)))
    return best


def word_attribution_error(reference: Sequence[Turn], words: Sequence[Turn], probe_s: float = 1.0) -> float:
    """Share of words given to the wrong speaker: who said a word is who speaks most during its
    first `probe_s` in the reference (a recogniser may stretch a word over speech it skipped);
    hypothesis speakers are mapped one-to-one to reference speakers to agree on most words.
    Time-based DER credits a stretched word's segment with the other voice's untranscribed speech;
    this counts whether the text is put in the right mouth."""
    said = []
    for start, end, speaker in words:
        stop = min(end, start + probe_s)
        overlap: dict = {}
        for ref_start, ref_end, ref_speaker in reference:
            shared = min(stop, ref_end) - max(start, ref_start)
            if shared > 0:
                overlap[ref_speaker] = overlap.get(ref_speaker, 0.0) + shared
        if overlap:
            said.append((max(sorted(overlap, key=str), key=lambda name: overlap[name]), speaker))
    if not said:
        return 0.0
    refs = sorted({ref for ref, _ in said}, key=str)
    hyps = sorted({hyp for _, hyp in said}, key=str)
    agree = {(r, h): 0.0 for r in refs for h in hyps}
    for ref, hyp in said:
        agree[ref, hyp] += 1
    return 1.0 - _best_matching(refs, hyps, agree) / len(said)
