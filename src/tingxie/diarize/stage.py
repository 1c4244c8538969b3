"""The diarization stage: fed each speech segment as it streams by, finished after recognition.

It works with every backend: it needs only the audio the VAD cut, and the text's times (words when
the backend aligned them). Vectors are computed as segments pass; the clustering runs once at the
end over the vectors alone.
"""

from __future__ import annotations

import functools
from typing import Iterable, Iterator, Protocol, Sequence

from tingxie.diarize.assign import label_segments, label_words
from tingxie.diarize.clustering import DEFAULT_THRESHOLD, SpeakerCount, cluster, first_appearance
from tingxie.diarize.encoder import SpeakerEncoder
from tingxie.diarize.timeline import Timeline, chunks, smooth, turns
from tingxie.diarize.windows import EmbeddedVoices, PendingWindows, SpeakerWindows
from tingxie.options import DiarizeOptions
from tingxie.segments import AudioSegment, TextSegment, Transcript


EMBEDDED = "resemblyzer"  # --spk-model's default: the encoder the resemblyzer wheel ships, run in NumPy


class VoiceEncoder(Protocol):
    """What diarization needs of a voice encoder (windows.EmbeddedVoices, campplus.CamPlusEncoder)."""

    same_voice: float  # the clustering's merge threshold for its vectors (cosine similarity)

    def new_embedder(self) -> PendingWindows:
        """An input's windows and their vectors, as its segments stream by."""
        ...

    def working_bytes(self, longest_stretch_s: float) -> int:
        """What the embedder holds beside the recogniser's batches (features and scratch)."""
        ...


@functools.cache
def load_encoder(speaker_model: str = EMBEDDED) -> VoiceEncoder:
    """The speaker encoder, read once per process: the embedded one (about 6 MB of weights), or
    FunASR's CAM++ (`cam++`, a ModelScope id or a model directory; the funasr extra)."""
    if speaker_model == EMBEDDED:
        return EmbeddedVoices(SpeakerEncoder())
    from tingxie.diarize.campplus import CamPlusEncoder, model_dir

    return CamPlusEncoder(model_dir(speaker_model))


def working_bytes(longest_segment_s: float, speaker_model: str = EMBEDDED) -> int:
    """What the stage holds beside the recogniser's batches while they run (the loaded encoder's
    weights are resident, counted by the probe): the embedder's features and encoder scratch."""
    return load_encoder(speaker_model).working_bytes(longest_segment_s)


def speaker_count(options: DiarizeOptions) -> SpeakerCount:
    return SpeakerCount(exactly=options.speakers, least=options.min_speakers or 1, most=options.max_speakers)


class Diarizer:
    """One input's diarization; make a new one per input (the encoder can be shared)."""

    def __init__(self, encoder: VoiceEncoder, options: DiarizeOptions = DiarizeOptions(enabled=True)):
        self.count = speaker_count(options)
        self._embedder = encoder.new_embedder()
        self._threshold = encoder.same_voice
        self.timeline: Timeline | None = None

    def observe(self, segments: Iterable[AudioSegment]) -> Iterator[AudioSegment]:
        """The same segments, each embedded on its way through (resumed runs included, so a
        resumed run computes the same vectors from the same audio)."""
        for segment in segments:
            self._embedder.add(segment)
            yield segment

    def speaker_timeline(self) -> Timeline:
        if self.timeline is None:
            self.timeline = timeline_of(self._embedder.finish(), self.count, self._threshold)
        return self.timeline

    def label(self, pieces: Sequence[TextSegment], words: Sequence[TextSegment]) -> list[TextSegment]:
        """The output segments with a speaker each, cut where the speaker changes."""
        return label_segments(pieces, words, self.speaker_timeline())

    def label_transcript(self, transcript: Transcript) -> None:
        """Speakers on the transcript's segments (cut where the speaker changes) and words."""
        timeline = self.speaker_timeline()
        transcript.segments = label_segments(transcript.segments, transcript.words, timeline)
        transcript.words = label_words(transcript.words, timeline)


def timeline_of(windows: SpeakerWindows, count: SpeakerCount, threshold: float = DEFAULT_THRESHOLD) -> Timeline:
    if not windows.vectors:
        return Timeline([])
    labels = cluster(windows.matrix(), count, threshold=threshold, chunks=chunks(windows.starts, windows.ends))
    labels = first_appearance(smooth(windows.starts, windows.ends, labels))
    return Timeline(turns(windows.starts, windows.ends, labels))
