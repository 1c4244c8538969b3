"""Speech detection with silero VAD run through onnxruntime (never torch), built to stream.

SpeechProbabilities (vad_model.py) turns 16 kHz audio chunks of any size into one speech probability per
32 ms frame; SegmentTracker turns those into SpeechSpans as soon as they are final;
detect_speech does both for a whole array. Span shaping works on integer frame spans
[start, end) so it is exact, and converts to seconds only at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tingxie import SAMPLE_RATE
from tingxie.options import VadOptions
from tingxie.segments import SpeechSpan
from tingxie.vad.silero import EXACT, FRAME, FRAME_S, LaneLayout, SpeechProbabilities, model_path  # noqa: F401 (re-exported)

Span = tuple[int, int]  # frames, half-open


@dataclass(frozen=True)
class FrameRules:
    """VadOptions in frames. Lengths, gaps and min_speech are measured on speech before padding."""

    threshold: float
    neg_threshold: float  # a span ends after min_silence frames below this
    min_silence: int
    min_speech: int
    pad: int
    max_len: int  # before padding, so padded spans stay within max_segment_s
    merge_gap: int
    merge_max: int  # before padding; 0: no merging

    @classmethod
    def from_options(cls, options: VadOptions) -> FrameRules:
        total = _frames_within(options.max_segment_s)
        pad = min(_frames_within(options.speech_pad_s), total // 4)  # a huge pad must not eat the segment
        merge_max = _frames_within(options.merge_max_s) - 2 * pad if options.merge_max_s > 0 else 0
        return cls(
            threshold=options.threshold,
            neg_threshold=max(options.threshold - 0.15, 0.01),
            min_silence=max(1, math.ceil(options.min_silence_s / FRAME_S - 1e-9)),
            min_speech=math.ceil(options.min_speech_s / FRAME_S - 1e-9),
            pad=pad,
            max_len=total - 2 * pad,
            merge_gap=_frames_within(options.merge_gap_s),
            merge_max=max(merge_max, 0),
        )


def _frames_within(seconds: float) -> int:
    """The most whole frames whose length in seconds does not exceed `seconds`."""
    frames = int(seconds * SAMPLE_RATE) // FRAME + 1
    while frames > 0 and frames * FRAME / SAMPLE_RATE > seconds:
        frames -= 1
    return frames


class _Hysteresis:
    """Speech starts at a frame >= threshold and ends where min_silence quiet frames begin."""

    def __init__(self, rules: FrameRules):
        self.rules = rules
        self.frame = 0
        self.start: int | None = None
        self.quiet: int | None = None

    def step(self, prob: float) -> Span | None:
        frame, self.frame = self.frame, self.frame + 1
        if self.start is None:
            if prob >= self.rules.threshold:
                self.start = frame
            return None
        if prob >= self.rules.threshold:
            self.quiet = None
        elif prob < self.rules.neg_threshold:
            self.quiet = frame if self.quiet is None else self.quiet
            if frame + 1 - self.quiet >= self.rules.min_silence:
                return self.close()
        return None

    def close(self) -> Span | None:
        """End an open span at the end of the audio (or where its trailing quiet began)."""
        if self.start is None:
            return None
        span = (self.start, self.frame if self.quiet is None else self.quiet)
        self.start = self.quiet = None
        return span


def speech_runs(probs: np.ndarray, rules: FrameRules) -> list[Span]:
    """Raw speech spans of a whole probability array."""
    hysteresis = _Hysteresis(rules)
    spans = [span for prob in probs if (span := hysteresis.step(float(prob)))]
    last = hysteresis.close()
    return spans + [last] if last else spans


def drop_short(spans: list[Span], min_len: int) -> list[Span]:
    return [(s, e) for s, e in spans if e - s >= min_len]


def merge_spans(spans: list[Span], max_gap: int, max_len: int) -> list[Span]:
    """Greedily join each span to the group before it while the gap is <= max_gap and the
    group from first start to last end stays <= max_len (0: never join)."""
    out: list[Span] = []
    for span in spans:
        if out and _joinable(out[-1], span, max_gap, max_len):
            out[-1] = (out[-1][0], span[1])
        else:
            out.append(span)
    return out


def _joinable(group: Span, span: Span, max_gap: int, max_len: int) -> bool:
    return max_len > 0 and span[0] - group[1] <= max_gap and span[1] - group[0] <= max_len


def allowed_cuts(length: int, max_len: int) -> np.ndarray:
    """Offsets where a span of `length` frames may be cut: those that need no more pieces than
    the minimum and leave each side at least max_len // 4 frames (no slivers). Never empty."""
    margin = max(1, max_len // 4)
    offsets = np.arange(margin, length - margin + 1)
    pieces = -(-offsets // max_len) + -(-(length - offsets) // max_len)
    return offsets[pieces == -(-length // max_len)]


def split_span(span: Span, probs: np.ndarray, max_len: int) -> list[Span]:
    """Cut a span longer than max_len at its quietest allowed frame, recursively.

    probs[i] belongs to frame span[0] + i; a cut at frame c gives [start, c) and [c, end).
    """
    start, end = span
    if end - start <= max_len:
        return [span]
    offsets = allowed_cuts(end - start, max_len)
    cut = int(offsets[np.argmin(probs[offsets])])
    return split_span((start, start + cut), probs[:cut], max_len) + split_span(
        (start + cut, end), probs[cut:], max_len
    )


def pad_spans(spans: list[Span], pad: int, low: int, high: int) -> list[Span]:
    """Widen each span by up to pad frames a side within [low, high]; neighbours closer than
    2 * pad share the gap (the earlier one gets the smaller half), so nothing overlaps."""
    out = []
    for i, (start, end) in enumerate(spans):
        if i:
            gap = start - spans[i - 1][1]
            left = min(pad, gap - min(pad, gap // 2))
        else:
            left = min(pad, start - low)
        right = min(pad, (spans[i + 1][0] - end) // 2) if i + 1 < len(spans) else min(pad, high - end)
        out.append((start - left, end + right))
    return out


def shape_spans(raw: list[Span], probs: np.ndarray, n_frames: int, rules: FrameRules) -> list[Span]:
    """Raw speech spans to final ones: drop short, merge, split long, pad."""
    groups = merge_spans(drop_short(raw, rules.min_speech), rules.merge_gap, rules.merge_max)
    pieces = [piece for s, e in groups for piece in split_span((s, e), probs[s:e], rules.max_len)]
    return pad_spans(pieces, rules.pad, 0, n_frames)


def to_seconds(spans: list[Span], n_samples: int) -> list[SpeechSpan]:
    return [SpeechSpan(s * FRAME / SAMPLE_RATE, min(e * FRAME, n_samples) / SAMPLE_RATE) for s, e in spans]


class SegmentTracker:
    """Frame probabilities in, SpeechSpans out as soon as nothing later can change them.

    Gives exactly to_seconds(shape_spans(speech_runs(all probs))) whatever the chunking. It
    keeps the probabilities of the pending span only (for splitting).
    """

    def __init__(self, options: VadOptions):
        self.rules = FrameRules.from_options(options)
        self._hysteresis = _Hysteresis(self.rules)
        self._probs = np.zeros(0, np.float32)
        self._probs_from = 0  # frame of self._probs[0]
        self._group: Span | None = None  # merged raw speech not yet emitted
        self._low = 0  # padded end of the last emitted span
        self._out: list[Span] = []

    def push(self, probs: np.ndarray) -> list[SpeechSpan]:
        self._probs = np.concatenate([self._probs, np.asarray(probs, np.float32)])
        for prob in probs:
            span = self._hysteresis.step(float(prob))
            if span:
                self._add(span)
            self._emit_if_settled()
        # Only the pending group and the open span may still be split: drop older frames.
        keep = min(self._hysteresis.frame if self._hysteresis.start is None else self._hysteresis.start,
                   self._group[0] if self._group else self._hysteresis.frame)
        self._probs, self._probs_from = self._probs[keep - self._probs_from :], keep
        return self._take(self._hysteresis.frame * FRAME)

    def finish(self, n_samples: int | None = None) -> list[SpeechSpan]:
        """End of audio: close and emit everything. n_samples clamps the last end (default: whole frames)."""
        n_frames = self._hysteresis.frame
        last = self._hysteresis.close()
        if last:
            self._add(last)
        if self._group:
            self._emit(self._group, min(self.rules.pad, n_frames - self._group[1]))
        return self._take(n_frames * FRAME if n_samples is None else n_samples)

    def earliest_start_s(self) -> float:
        """No span emitted from now on starts before this time: audio before it may be dropped."""
        if self._group:
            frame = self._group[0]
        elif self._hysteresis.start is not None:
            frame = self._hysteresis.start
        else:
            frame = self._hysteresis.frame
        return max(self._low, frame - self.rules.pad) * FRAME / SAMPLE_RATE

    def _add(self, span: Span) -> None:
        rules = self.rules
        if span[1] - span[0] < rules.min_speech:
            return
        if self._group and _joinable(self._group, span, rules.merge_gap, rules.merge_max):
            self._group = (self._group[0], span[1])
            return
        if self._group:  # the next span is known now, and so is the padding between them
            self._emit(self._group, min(rules.pad, (span[0] - self._group[1]) // 2))
        self._group = span

    def _emit_if_settled(self) -> None:
        """Emit the group once no later speech can join it or narrow its right padding."""
        if not self._group:
            return
        earliest = self._hysteresis.start if self._hysteresis.start is not None else self._hysteresis.frame
        gap = earliest - self._group[1]
        if gap >= 2 * self.rules.pad and not (self.rules.merge_max > 0 and gap <= self.rules.merge_gap):
            self._emit(self._group, self.rules.pad)

    def _emit(self, group: Span, right_pad: int) -> None:
        start, end = group
        pieces = split_span(group, self._probs[start - self._probs_from : end - self._probs_from], self.rules.max_len)
        padded = pad_spans(pieces, self.rules.pad, self._low, end + right_pad)
        self._out.extend(padded)
        self._low = padded[-1][1]
        self._group = None

    def _take(self, n_samples: int) -> list[SpeechSpan]:
        out, self._out = self._out, []
        return to_seconds(out, n_samples)


class SpeechDetector:
    """Audio chunks in, final SpeechSpans out: SpeechProbabilities feeding a SegmentTracker."""

    def __init__(self, options: VadOptions, model: str | Path | None = None, layout: LaneLayout = EXACT):
        self.probabilities = SpeechProbabilities(model, layout)
        self.tracker = SegmentTracker(options)

    def push(self, audio: np.ndarray) -> list[SpeechSpan]:
        return self.tracker.push(self.probabilities.push(audio))

    def earliest_start_s(self) -> float:
        return self.tracker.earliest_start_s()

    def finish(self) -> list[SpeechSpan]:
        spans = self.tracker.push(self.probabilities.flush())
        return spans + self.tracker.finish(self.probabilities.samples)


def detect_speech(audio: np.ndarray, options: VadOptions | None = None) -> list[SpeechSpan]:
    """Speech spans of a whole 16 kHz mono array: sorted, disjoint, within the audio,
    none longer than options.max_segment_s."""
    detector = SpeechDetector(options or VadOptions())
    return detector.push(audio) + detector.finish()
