"""A job's JSON view and stored transcript, from the live work or from its row in the job store."""

from __future__ import annotations

from dataclasses import dataclass

from tingxie.segments import RunStats, Transcript
from tingxie.server.formats import build_transcript, words_of
from tingxie.server.speakers import label, turns_from_json
from tingxie.server.store import JobRecord, JobStore
from tingxie.server.work import RequestOptions


def stored_transcript(store: JobStore, record: JobRecord, model: str) -> Transcript:
    """A finished job's transcript from its stored segments."""
    stats = RunStats(audio_seconds=record.audio_total_s or 0.0, wall_seconds=record.processing_s,
                     peak_rss_bytes=record.peak_memory_bytes or 0, batches=record.batches,
                     segments=record.segments_total or 0, oom_retries=record.oom_retries)
    segments = store.segments(record.id)
    transcript = build_transcript(segments, source=record.options.get("filename", "audio"), model=model, stats=stats)
    if record.speaker_turns is not None:  # a diarized job: labelled by the turns stored when it succeeded
        label(transcript, words_of(segments), turns_from_json(record.speaker_turns))
    return transcript


def record_view(record: JobRecord, segments_done: int) -> dict:
    """The job's JSON view from its stored row (a job no longer, or not yet, in memory)."""
    elapsed = record.processing_s
    return JobSnapshot(
        job_id=record.id, state=record.state, options=RequestOptions.from_json(record.options),
        created_at=record.created_at, started_at=record.started_at, finished_at=record.finished_at,
        audio_done_s=record.audio_done_s, audio_total_s=record.audio_total_s, segments_done=segments_done,
        speed=record.audio_done_s / elapsed if elapsed > 0 else 0.0, peak_memory_bytes=record.peak_memory_bytes,
        error=record.error, error_status=record.error_status, wall_s=elapsed, batches=record.batches,
        oom_retries=record.oom_retries, memory=record.memory,
    ).view()


@dataclass(frozen=True)
class JobSnapshot:
    """A job's figures at one moment, from the live work or its stored row."""

    job_id: str
    state: str
    options: RequestOptions
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    audio_done_s: float
    audio_total_s: float | None
    segments_done: int
    speed: float
    peak_memory_bytes: int | None
    error: str | None
    error_status: int | None
    wall_s: float
    batches: int
    oom_retries: int
    # the memory budget as the job sees it (service._memory_view): the user's budget, the working
    # budget now, its lowest, shrinks, decoded audio held and reserved; a stored row keeps the
    # figures of its last batch and its end (None: no budget, or a row older than schema 4)
    memory: dict | None = None

    def view(self) -> dict:
        """The JSON shape of GET /v1/jobs/{id}."""
        done, total = self.audio_done_s, self.audio_total_s
        fraction = min(1.0, done / total) if total else (1.0 if self.state == "succeeded" else 0.0)
        return {
            "id": self.job_id, "object": "transcription.job", "state": self.state,
            "model": self.options.model or None, "filename": self.options.filename,
            "response_format": self.options.response_format,
            "created_at": self.created_at, "started_at": self.started_at, "finished_at": self.finished_at,
            "progress": {"audio_done_s": round(done, 3), "audio_total_s": total and round(total, 3),
                         "fraction": round(fraction, 4), "segments_done": self.segments_done},
            "speed": round(self.speed, 3), "peak_memory_bytes": self.peak_memory_bytes, "wall_s": round(self.wall_s, 3),
            "batches": self.batches, "oom_retries": self.oom_retries, "memory": self.memory,
            "error": {"message": self.error, "status": self.error_status} if self.error else None,
        }
