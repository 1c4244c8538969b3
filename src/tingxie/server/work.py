"""One request or job while the server holds it: its queued segments, progress and outcome.

Every field is read and written under the scheduler's lock; the done event and callbacks
let HTTP handlers wait without holding it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from tingxie.options import DecodeOptions, VadOptions
from tingxie.segments import AudioSegment
from tingxie.server.api_errors import ApiError
from tingxie.server.store import FinishedSegment

TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class RequestOptions:
    """What a client asked for, beyond the audio. Kept with a job so its result can be rendered later."""

    filename: str = "audio"
    model: str = ""
    response_format: str = "json"
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    timestamp_granularities: tuple[str, ...] = ()
    task: str = "transcribe"  # "translate": /v1/audio/translations
    stream: bool = False  # answer with server-sent events as segments finish
    # None or "auto": the server's VAD options; else server_vad's threshold, prefix_padding_ms, silence_duration_ms
    chunking_strategy: dict | None = None
    logprobs: bool = False  # include[]=logprobs: each token of the text with its log-probability
    # who speaks (response_format diarized_json, or diarize=true for any format): the speaker
    # count fields as the CLI's --speakers / --min-speakers / --max-speakers
    diarize: bool = False
    speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "timestamp_granularities": list(self.timestamp_granularities)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RequestOptions":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["timestamp_granularities"] = tuple(known.get("timestamp_granularities", ()))
        return cls(**known)


@dataclass(eq=False)
class Work:
    id: str
    options: RequestOptions
    upload: Path
    durable: bool  # a /v1/jobs job (in SQLite) rather than a request answered when done
    total_s: float | None  # what the header states; None until decoded when it states nothing
    seq: int  # admission order: ties in fairness, and the order of one-at-a-time serving
    decode: DecodeOptions | None = None  # its batches' decode options; None: the backend's own
    vad: VadOptions | None = None  # its speech detection (chunking_strategy); None: the server's
    engine: Any = None  # its model's models_on_demand.Engine (transcriber, scheduler), set when admitted
    # diarize.stage.Diarizer of a diarized work: fed its segments by the producer, which also
    # clusters them once all are decoded (the timeline is ready before the work can succeed)
    diarizer: Any = None
    created_at: float = field(default_factory=time.time)
    state: str = "queued"
    pending: deque = field(default_factory=deque)  # decoded AudioSegments not yet batched
    in_flight: dict = field(default_factory=dict)  # local index -> start s, in a running batch
    finished: dict = field(default_factory=dict)  # local index -> FinishedSegment
    produced_all: bool = False
    decoded_s: float = 0.0
    done_floor_s: float = 0.0  # progress an earlier run recorded: a resumed job never reads less
    served_s: float = 0.0  # compute seconds this work has received: the fairness measure
    started_at: float | None = None  # this run's first batch
    first_started_at: float | None = None  # the first batch of any run (a job may be resumed)
    finished_at: float | None = None
    processing_s: float = 0.0  # wall time across runs (a resumed job adds its earlier runs')
    batches: int = 0
    oom_retries: int = 0  # splits after out-of-memory in the batches this work was part of
    peak_memory_bytes: int = 0
    # the memory account (memory_account.py): the most decoded audio it may hold, reserved at
    # admission, and the samples of its segments in a running batch
    reserve_bytes: int = 0
    in_flight_audio_bytes: int = 0
    # the adaptive budget while it ran: shrinks begun since its first batch (and in its earlier
    # runs, for a resumed job), the least memory one of its batches was planned with
    shrinks_before: int | None = None
    earlier_shrinks: int = 0
    budget_shrinks: int = 0
    lowest_batch_memory_bytes: int | None = None
    error: ApiError | None = None
    done: threading.Event = field(default_factory=threading.Event)
    _callbacks: list = field(default_factory=list)
    _callbacks_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def complete(self) -> bool:
        return self.produced_all and not self.pending and not self.in_flight

    def audio_done_s(self, finishing: frozenset = frozenset()) -> float:
        """Audio up to which everything is transcribed: the start of the first segment not yet
        done, counting the in-flight segments `finishing` as done."""
        if self.state == "succeeded":
            return self.total_s or self.decoded_s
        open_starts = [segment.start for segment in self.pending]
        open_starts += [start for index, start in self.in_flight.items() if index not in finishing]
        return max(self.done_floor_s, min(open_starts, default=self.decoded_s))

    def speed(self) -> float:
        elapsed = self.elapsed_s()
        return self.audio_done_s() / elapsed if elapsed > 0 else 0.0

    def elapsed_s(self) -> float:
        if self.started_at is None:
            return self.processing_s
        end = self.finished_at or time.time()
        return self.processing_s + max(0.0, end - self.started_at)

    def take(self, count: int) -> list[AudioSegment]:
        taken = [self.pending.popleft() for _ in range(count)]
        for segment in taken:
            self.in_flight[segment.index] = segment.start
            self.in_flight_audio_bytes += segment.samples.nbytes
        return taken

    def add_done_callback(self, callback: Callable[["Work"], None]) -> None:
        """Call back (from another thread) once terminal; at once if it already is."""
        with self._callbacks_lock:
            if not self.done.is_set():
                self._callbacks.append(callback)
                return
        callback(self)

    def settle(self, state: str, error: ApiError | None = None) -> bool:
        """Move to a terminal state once; False if it already was in one."""
        if self.terminal:
            return False
        self.state, self.error = state, error
        self.finished_at = time.time()
        self.pending.clear()
        return True

    def notify_done(self) -> None:
        with self._callbacks_lock:
            self.done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def results(self) -> list[FinishedSegment]:
        return [self.finished[i] for i in sorted(self.finished)]
