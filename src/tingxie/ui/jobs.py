"""The page's jobs: checked choices, the upload handed to the server or the page runner, views.

A job the server's loaded model can run as asked (its model, a language it honours, automatic
batching, no budget of its own) becomes a durable server job, batched with the API's requests.
Anything else runs on the page runner (page_runner.py). Either way the page only sees a job id
and the same view dict as GET /v1/jobs/{id}. Every error leaves as a PageError in plain words.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tingxie.errors import TingxieError
from tingxie.options import BatchOptions, DecodeOptions, DiarizeOptions, parse_batch_size
from tingxie.segments import Transcript
from tingxie.server.api_errors import ApiError
from tingxie.server.app import probe_upload
from tingxie.server.form import remove_quietly, save_upload
from tingxie.server.formats import words_of
from tingxie.server.service import TranscriptionService
from tingxie.server.work import RequestOptions
from tingxie.ui.page_runner import PageRunner

AUTO_LANGUAGE = "auto"


class PageError(Exception):
    """What the page shows in its status line: one sentence, never a traceback."""


@dataclass(frozen=True)
class PageChoices:
    """What the user picked, validated once (the engine's own option checks word the errors)."""

    model: str
    language: str | None = None  # None: detected per window
    batch_size_s: float | None = None  # None: automatic (budgeted) batching
    memory_budget: str | None = None
    diarize: bool = False  # label who speaks
    speakers: int | None = None  # with diarize: exactly this many; None: found from the audio
    prompt: str | None = None  # Whisper's initial prompt: names, terms, the style of the text
    temperature: float | None = None  # None or 0: the server's (0, then higher where decoding fails)
    word_timestamps: bool = False  # each word's times in the JSON file

    @classmethod
    def parse(cls, model: str, language: str, batching: str, budget: str, diarize: bool = False,
              speakers: float | None = None, *, prompt: str = "", temperature: float | None = None,
              word_timestamps: bool = False) -> "PageChoices":
        try:
            language = None if not language or language.strip() == AUTO_LANGUAGE else language.strip()
            if speakers is not None and speakers != int(speakers):
                raise PageError(f"the number of speakers must be a whole number, not {speakers}")
            count = int(speakers) if speakers else None  # 0 or empty: found from the audio
            choices = cls(model=(model or "").strip(), language=language,
                          batch_size_s=parse_batch_size(batching or "auto"), memory_budget=(budget or "").strip() or None,
                          diarize=bool(diarize), speakers=count if diarize else None,
                          prompt=(prompt or "").strip() or None, temperature=temperature or None,
                          word_timestamps=bool(word_timestamps))
            if not choices.model:
                raise PageError("choose a model")
            # the engine's own messages for bad values
            DecodeOptions(language=choices.language, initial_prompt=choices.prompt,
                          **({"temperature": choices.temperature} if choices.temperature is not None else {}))
            BatchOptions(batch_size_s=choices.batch_size_s, memory_budget=choices.memory_budget)
            DiarizeOptions(enabled=choices.diarize, speakers=choices.speakers)
        except TingxieError as error:
            raise PageError(str(error).replace("--", "")) from None
        return choices


class PageJobs:
    def __init__(self, service: TranscriptionService, runner: PageRunner, uploads: Path):
        self.service = service
        self.runner = runner
        self.uploads = uploads  # the page runner's; the server sweeps its own folder at start

    @property
    def server_model(self) -> str:
        return self.service.model_name

    def submit(self, source: str, filename: str, choices: PageChoices) -> str:
        """Copy the file from the page's upload cache, check it, start the job; its id."""
        on_server = self._server_runs(choices)
        folder = self.service.config.uploads if on_server else self.uploads
        limit = self.service.config.max_upload_bytes
        try:
            with open(source, "rb") as data:
                job_id, path = save_upload(data, folder, limit)
        except ApiError as error:
            raise PageError(error.message) from None
        except OSError as error:
            raise PageError(f"the uploaded file could not be read ({error.strerror or error})") from None
        try:
            total_s = probe_upload(path, filename, self.service.config.max_duration_s)
            if on_server:
                options = dataclasses.replace(_request(choices), filename=filename)
                self.service.submit(job_id, options, path, total_s, durable=True)
            else:
                self.runner.submit(job_id, {"filename": filename, **asdict(choices)}, path, total_s)
        except ApiError as error:
            remove_quietly(path)
            raise PageError(error.message) from None
        except BaseException:
            remove_quietly(path)
            raise
        return job_id

    def _server_runs(self, choices: PageChoices) -> bool:
        if choices.model != self.server_model or choices.batch_size_s is not None or choices.memory_budget:
            return False
        try:
            self.service.check_options(_request(choices))
        except ApiError:
            return False  # e.g. a language the server was not started with
        return True

    def view(self, job_id: str) -> dict | None:
        if not job_id:
            return None
        view = self.service.job_view(job_id)
        if view is not None:
            return view | {"model": view["model"] or self.server_model, "runs_on": "server"}
        view = self.runner.view(job_id)
        return None if view is None else view | {"runs_on": "page"}

    def transcript(self, job_id: str) -> Transcript | None:
        record = self.service.store.get(job_id)
        if record is not None:
            if record.state != "succeeded":
                return None
            transcript = self.service.stored_transcript(record)
            if "word" in record.options.get("timestamp_granularities", ()):  # asked for: the JSON file has them
                transcript.words = words_of(self.service.store.segments(job_id))
            return transcript
        return self.runner.transcript(job_id)

    def cancel(self, job_id: str) -> None:
        if self.service.store.get(job_id) is not None:
            self.service.cancel(job_id)
        else:
            self.runner.cancel(job_id)

    def recent(self, limit: int = 20) -> list[tuple[str, str]]:
        """(label, id) of the newest jobs of both stores, newest first."""
        records = self.service.store.recent(limit) + self.runner.store.recent(limit)
        records.sort(key=lambda record: record.created_at, reverse=True)
        return [(f"{record.options.get('filename', 'audio')} · {_when(record.created_at)} · {record.id[:8]}", record.id)
                for record in records[:limit]]


def _request(choices: PageChoices) -> RequestOptions:
    """A server job's options from the page's choices (the API's fields, as a client sends them)."""
    return RequestOptions(model=choices.model, language=choices.language, diarize=choices.diarize,
                          speakers=choices.speakers, prompt=choices.prompt, temperature=choices.temperature,
                          timestamp_granularities=("segment", "word") if choices.word_timestamps else ())


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))
