"""Models on demand: every model this server can serve, loaded on the first request naming it.

Each loaded model is an Engine: its Transcriber (backend, memory planner) and its own Scheduler
thread. All schedulers share one condition (every Work field stays under one lock) and one run
lock (one batch at a time in the process), so the memory budget covers the loaded models plus
one batch: each planner's working budget is the budget less everything resident, whichever
model holds it. Whether a model fits is the server's memory account's answer (memory_account.py):
the loaded models, one batch and the decoded audio every admitted request and job reserved, and
the new model's weights, against the budget. A model is kept while it has work; when another
must load and the account has no room for its weights, idle models are unloaded, least recently
used first, and then the load waits (LOAD_WAIT_S) for busy ones to finish and their reservations
to end. A model that cannot fit even alone is refused with the numbers (400), one that waited in
vain with a 503, and loading never takes memory from admitted work: only idle models are
unloaded for it.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tingxie.engine.pipeline import Transcriber
from tingxie.errors import TingxieError
from tingxie.memory.sizes import format_bytes
from tingxie.planner.memory_model import min_budget
from tingxie.models.registry import EMBEDDED, resolve_model
from tingxie.server.api_errors import ApiError, bad_request
from tingxie.server.memory_account import MemoryAccount
from tingxie.server.scheduler import Scheduler

log = logging.getLogger("tingxie.server")
LOAD_WAIT_S = 600.0  # how long a model waits for busy ones to finish before its request is refused


@dataclass(eq=False)
class Engine:
    name: str
    transcriber: Transcriber
    scheduler: Scheduler
    last_used: float

    def idle(self) -> bool:
        with self.scheduler.cond:
            return not self.scheduler.works


class ModelPool:
    """The servable models and the loaded ones. make_scheduler builds a model's scheduler
    (started here); account: the server's memory account, asked before and after each load;
    load builds a Transcriber for a model name (tests pass their own)."""

    def __init__(self, first: Transcriber, make_scheduler: Callable[[Transcriber], Scheduler],
                 account: MemoryAccount, *, servable: tuple[str, ...] = (), aliases: tuple[str, ...] = (),
                 load: Callable[[str], Transcriber] | None = None):
        self.default = first.backend.name
        self.aliases = aliases
        self._make_scheduler = make_scheduler
        self.account = account
        self.loader = load or self._load_with(first)  # name -> Transcriber (tests give fakes)
        self.weights_of: Callable[[str], int] = _weights_bytes  # name -> bytes its loading makes resident at most
        self.memory = first.memory  # None (a fake backend): no budget to keep
        names = [self.default, *servable, *(EMBEDDED if first.memory is not None else ())]
        self._named = tuple(dict.fromkeys(names))
        self._hub = first.memory is not None  # real models: the Whisper models in the Hugging Face cache too
        self._lock = threading.RLock()  # loads and unloads one at a time
        self.engines: dict[str, Engine] = {self.default: Engine(self.default, first, make_scheduler(first), time.time())}
        self._started = False

    @staticmethod
    def _load_with(first: Transcriber) -> Callable[[str], Transcriber]:
        """Another model with the options the server was started with (the user's model, decode,
        batch and VAD flags: --max-batch-size stays a cap; an automatic one is resolved for the
        model's device), under the same budget in bytes (a share such as "50%" would mean
        another amount once the first model is resident)."""
        options = first.requested_options
        budget = first.memory.total_budget_bytes if first.memory is not None else None
        batch = dataclasses.replace(options.batch, memory_budget=str(budget) if budget else options.batch.memory_budget)

        def load(name: str) -> Transcriber:
            return Transcriber(dataclasses.replace(options, model=dataclasses.replace(options.model, name=name),
                                                   batch=batch))
        return load

    # -- naming ----------------------------------------------------------------------------

    @property
    def servable(self) -> tuple[str, ...]:
        """Every model it can serve: the one it started with, --preload's, the embedded ones and
        the Whisper models in the Hugging Face cache now (one pulled after the start included)."""
        return tuple(dict.fromkeys([*self._named, *self._hub_cached()]))

    def _hub_cached(self) -> dict[str, str]:
        """name -> repo of each Whisper model in the Hugging Face cache, by its shortest name
        (tiny.en for Systran/faster-whisper-tiny.en), as `tingxie models` lists them."""
        if not self._hub:
            return {}
        from tingxie.cli.models import hf_cached_whisper, short_name

        return {short_name(repo): repo for repo, _ in hf_cached_whisper()}

    def resolve(self, requested: str) -> str:
        """The model a request names: its own, the default for none or an alias; a cached
        model's repo id is its short name (one engine); 400 otherwise."""
        if not requested or requested in self.aliases:
            return self.default
        requested = next((name for name, repo in self._hub_cached().items() if repo == requested), requested)
        if requested not in self.servable:
            raise bad_request(f"model {requested!r} is not available on this server; it serves "
                              f"{', '.join(self.servable)} (and {', '.join(self.aliases)} for {self.default})",
                              param="model", code="model_not_found")
        return requested

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self.engines)

    @property
    def primary(self) -> Engine:
        """The most recently used loaded engine. Never call it holding the schedulers' lock: a
        load waiting for room holds the pool's lock while it waits on theirs."""
        engines = list(self.engines.values())
        if not engines:  # a swap is under way (or a load failed after unloading the rest)
            with self._lock:
                engines = list(self.engines.values()) or [self._load_engine(self.default)]
        return max(engines, key=lambda engine: engine.last_used)

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            self._started = True
            for engine in self.engines.values():
                engine.scheduler.start()

    def stop(self) -> None:
        with self._lock:
            self._started = False
            for engine in self.engines.values():
                engine.scheduler.stop()

    def use(self, name: str, admit: Callable[[Engine], None]) -> Engine:
        """The engine of a model, loaded if need be; admit(engine) runs before any unload can
        choose it (it adds the work to the engine's scheduler, so the engine is busy)."""
        with self._lock:
            engine = self.engines.get(name) or self._load_engine(name)
            engine.last_used = time.time()
            admit(engine)
            return engine

    def preload(self, name: str) -> None:
        self.use(self.resolve(name), lambda engine: None)

    def _load_engine(self, name: str) -> Engine:
        weights = self.weights_of(name)
        if self.memory is not None:  # room for the weights first: loading never takes admitted work's memory
            self._free_up(name, lambda: self.account.room_for(weights)[0],
                          lambda: f"its weights are {format_bytes(weights)} and {self._account_now()}")
        started = time.perf_counter()
        transcriber = self._loaded(name)
        idle = [engine for engine in self.engines.values() if engine.idle()]
        if transcriber.options.model != transcriber.requested_options.model and idle:
            # It fitted its execution to the room the other models leave (fewer replicas,
            # slower) while idle ones could make room: they go, and it loads again as asked.
            transcriber.backend.unload()
            transcriber = None
            for engine in idle:
                self._unload(engine, reason=f"room for {name} as asked")
            transcriber = self._loaded(name)
        planner, shape = transcriber.memory, transcriber.backend.shape
        if planner is not None:  # then room for one batch of one window beside all that is resident
            try:
                # every model that stays loaded must still be able to run its own smallest batch
                # (a larger model's window may need more than the new one's)
                # and the account still holds every reservation beside it
                floor = min_budget(shape, planner.model)
                self._free_up(name, lambda: planner.fits_smallest_batch(shape) and all(
                                  engine.transcriber.memory.fits_smallest_batch(engine.transcriber.backend.shape)
                                  for engine in self.engines.values() if engine.transcriber.memory is not None)
                              and self.account.room_for(0, floor)[0],
                              lambda: f"loaded, {format_bytes(planner.probe.current_bytes())} is resident and one "
                                      f"{shape.max_item_s:.0f} s window needs {format_bytes(floor)} more; "
                                      f"{self._account_now()}")
            except ApiError:
                transcriber.backend.unload()  # its weights go before the answer
                transcriber = planner = None
                gc.collect()
                raise
        engine = Engine(name, transcriber, self._make_scheduler(transcriber), time.time())
        if self._started:
            engine.scheduler.start()
        self.engines[name] = engine
        log.info("model loaded", extra={"fields": {"model": name, "seconds": round(time.perf_counter() - started, 2),
                                                   "loaded": list(self.engines)}})
        return engine

    def _loaded(self, name: str) -> Transcriber:
        try:
            return self.loader(name)
        except TingxieError as error:
            raise bad_request(f"model {name!r} cannot be loaded: {error}", param="model", code="model_not_loadable") from None
        finally:
            self.account.models_changed()  # its weights (or a failed load's leftovers) are resident now

    def _free_up(self, name: str, fits: Callable[[], bool], numbers: Callable[[], str]) -> None:
        """Unload idle models, least recently used first, until fits(); while only busy ones
        are left, wait for one to finish its work or for admitted works to end and free their
        reservations (a 503 when the wait is over); with no other model and nothing reserved,
        the model cannot fit: a 400."""
        deadline = time.monotonic() + LOAD_WAIT_S
        while not fits():
            others = [engine for engine in self.engines.values() if engine.name != name]
            if not others and not self._reserved():
                raise ApiError(400, f"model {name!r} does not fit the memory budget of "
                                    f"{format_bytes(self.memory.total_budget_bytes)} even alone: {numbers()}; start "
                                    f"the server with a larger --memory-budget", param="model",
                               code="model_does_not_fit")
            idle = [engine for engine in others if engine.idle()]
            if idle:
                self._unload(min(idle, key=lambda engine: engine.last_used), reason=f"room for {name}")
            elif not self.account.wait_for(lambda: fits() or any(not engine.scheduler.works for engine in others),
                                           deadline - time.monotonic()):
                busy = f"; busy: {', '.join(e.name for e in others)}" if others else ""
                raise ApiError(503, f"model {name!r} waited {LOAD_WAIT_S:.0f} s for room in the memory budget "
                                    f"({numbers()}{busy}); retry later",
                               code="model_busy", headers={"Retry-After": "30"})

    def _reserved(self) -> int:
        figures = self.account.figures()
        return figures.reserved if figures is not None else 0

    def _account_now(self) -> str:
        figures = self.account.figures()
        return figures.describe() if figures is not None else "no budget is kept"

    def _unload(self, engine: Engine, reason: str) -> None:
        engine.scheduler.stop()
        del self.engines[engine.name]
        engine.transcriber.backend.unload()  # the caller that built the first model may still hold it
        gc.collect()  # the weights go now, not at some later collection
        self.account.models_changed()
        log.info("model unloaded", extra={"fields": {"model": engine.name, "reason": reason,
                                                     "loaded": list(self.engines)}})

    def view(self, created: int) -> list[dict]:
        """GET /v1/models: every servable model and alias, with whether it is loaded now."""
        loaded = set(self.loaded())
        rows = [{"id": name, "object": "model", "created": created, "owned_by": "tingxie", "loaded": name in loaded}
                for name in self.servable]
        rows += [{"id": alias, "object": "model", "created": created, "owned_by": "tingxie",
                  "loaded": self.default in loaded, "alias_of": self.default} for alias in self.aliases]
        return rows


def _weights_bytes(name: str) -> int:
    """The size of a model's weights on disk: what loading it will at most make resident (int8
    on a CPU holds less), before any profile of it exists."""
    try:
        path = resolve_model(name).path
    except TingxieError:
        return 0
    files = [path / "model.bin"] if (path / "model.bin").is_file() else list(Path(path).rglob("*"))
    return sum(f.stat().st_size for f in files if f.is_file())
