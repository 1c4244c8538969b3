"""Who speaks, per request: the diarization stage on one work's own segments, and its labels.

The recogniser batches segments across requests (scheduler.py); speakers belong to one input,
so the stage runs beside the scheduler as engine/pipeline.py runs it beside the executor: the
producer feeds each of the work's segments to the work's own Diarizer as they are decoded
(voice vectors only, no audio kept) and clusters them once all are decoded, in the producer's
thread, never the scheduler's. Batches are untouched: a diarized request decodes with the same
options as any other, so it shares batches with them. The finished transcript is labelled (a
segment is cut where the speaker changes). A job keeps its speaker turns with its row, so its
result has the same speakers after a restart.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from tingxie.errors import OptionError
from tingxie.options import DiarizeOptions
from tingxie.segments import TextSegment, Transcript
from tingxie.server.api_errors import ApiError, bad_request
from tingxie.server.work import RequestOptions

COUNT_FIELDS = ("speakers", "min_speakers", "max_speakers")
_FLAGS = {"--min-speakers": "min_speakers", "--max-speakers": "max_speakers", "--speakers": "speakers",
          "--diarize": "diarize=true (or response_format diarized_json)"}


def diarize_options(options: RequestOptions) -> DiarizeOptions:
    """The request's speaker options as the CLI's (validated there once); a 400 naming the
    request's own fields where they do not hold together."""
    try:
        return DiarizeOptions(enabled=options.diarize, speakers=options.speakers, min_speakers=options.min_speakers,
                              max_speakers=options.max_speakers)
    except OptionError as error:
        message = str(error)
        for flag, name in _FLAGS.items():  # the longer flags first: --speakers is in --min-speakers
            message = message.replace(flag, name)
        named = [name for name in COUNT_FIELDS if name in message]
        param = min(named, key=message.index) if named else "diarize"
        raise bad_request(message, param=param, code="invalid_speakers") from None


def new_diarizer(options: RequestOptions):
    """A fresh diarization stage for a work that asks for one, else None. The speaker encoder is
    read once per process; a server without it answers 501 at admission, before any work."""
    diarize = diarize_options(options)
    if not diarize.enabled:
        return None
    from tingxie.diarize.stage import Diarizer, load_encoder

    try:
        encoder = load_encoder()
    except OptionError as error:
        raise ApiError(501, f"diarization is not available on this server: {error}", param="response_format",
                       code="diarization_unavailable") from None
    return Diarizer(encoder, diarize)


def label(transcript: Transcript, words: Sequence[TextSegment], turns: Iterable) -> Transcript:
    """The transcript with a speaker on every segment (cut where it changes) and word."""
    from tingxie.diarize.assign import label_segments, label_words
    from tingxie.diarize.timeline import Timeline

    timeline = Timeline(list(turns))
    transcript.segments = label_segments(transcript.segments, words, timeline)
    transcript.words = label_words(words, timeline)
    return transcript


def turns_to_json(turns) -> list[list]:
    """A timeline's turns as stored with a job: [start, end, speaker number]."""
    return [[turn.start, turn.end, turn.speaker] for turn in turns]


def turns_from_json(rows: Iterable[Sequence]) -> list:
    from tingxie.diarize.timeline import Turn

    return [Turn(float(start), float(end), int(speaker)) for start, end, speaker in rows]


def turns_of_labelled(segments: Sequence[TextSegment]) -> list[list]:
    """Stored turns that label a job's stored results as a diarized transcript was labelled:
    one per labelled segment (the page runner's Transcriber keeps its timeline to itself; its
    segments were cut where the speaker changes, so they relabel the same words the same way)."""
    from tingxie.diarize.assign import speaker_name

    numbers = {speaker_name(n): n for n in range(len(segments) + 1)}
    return [[s.start, s.end, numbers[s.speaker]] for s in segments if s.speaker in numbers]


def diarized_segments(transcript: Transcript) -> list[dict]:
    """OpenAI's diarized segments (TranscriptionDiarizedSegment, also the stream's
    transcript.text.segment event): one per labelled piece with text, in time order."""
    out = []
    for piece in transcript.segments:
        text = piece.text.strip()
        if not text:
            continue
        out.append({"type": "transcript.text.segment", "id": f"seg_{len(out)}", "start": round(piece.start, 3),
                    "end": round(piece.end, 3), "speaker": piece.speaker or "unknown", "text": text})
    return out
