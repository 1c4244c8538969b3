"""`tingxie transcribe --ray-workers N`: many inputs spread over Ray actors.

Each worker is a Ray actor: one process, one loaded model (a Transcriber), and its share of
the machine: the memory budget and the CPU threads are divided between the workers, so N
workers together stay inside what one run would have been given. A worker takes the next input
as soon as it is free (longest inputs first, so a long file does not start last); each input
goes through the same per-file path as the single-process command (checkpoint, partial outputs,
atomic final files), so a killed run resumes either way. A bad input is one line on stderr and
the others go on; the exit status is the single-process command's.

With --ray-address the workers join an existing Ray cluster instead of a local one; the inputs
and the output folder must then be paths every node can reach.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import sys
from pathlib import Path

from tingxie.errors import OptionError, TingxieError
from tingxie.options import TranscribeOptions
from tingxie.memory.budget import default_total
from tingxie.memory.resources import usable_cpus
from tingxie.memory.sizes import parse_memory_budget
from tingxie.cli.transcribe import failure_line, transcribe_one



def worker_options(options: TranscribeOptions, workers: int, *, cpus: int, available_bytes: int) -> TranscribeOptions:
    """One worker's options: the run's budget and CPUs divided between the workers.

    The budget of a single run (--memory-budget, or 70 % of what is available) split evenly,
    as bytes: each worker then plans its batches inside its share. Threads: the user's choice
    per worker, or the usable CPUs divided (at least one each)."""
    if workers < 1:
        raise OptionError(f"--ray-workers must be at least 1, not {workers}")
    total = (parse_memory_budget(options.batch.memory_budget, available_bytes)
             if options.batch.memory_budget is not None else default_total(0, available_bytes))
    share = total // workers
    threads = options.model.threads or max(1, cpus // workers)
    return dataclasses.replace(
        options,
        model=dataclasses.replace(options.model, threads=threads),
        batch=dataclasses.replace(options.batch, memory_budget=f"{share // 2**20}MiB"),
    )


class Worker:
    """What runs inside one Ray actor: a loaded model and the per-file command."""

    def __init__(self, options: TranscribeOptions):
        from tingxie.engine.pipeline import Transcriber

        self.transcriber, self.error = None, None
        try:
            self.transcriber = Transcriber(options)
        except TingxieError as error:  # a model that cannot load: one line in the parent, not a traceback
            self.error = str(error)

    def ready(self) -> str | None:
        """None once the model is loaded, else why it could not be."""
        return self.error

    def transcribe(self, name: str, formats: tuple[str, ...], output_dir: str, restart: bool):
        """(name, text, summary) or (name, None, the failure's line): errors come back as data,
        so one bad input never fails the pool."""
        try:
            text, summary = transcribe_one(self.transcriber, name, formats, Path(output_dir), True, restart)
        except Exception as error:  # noqa: BLE001 - reported per input, as the single-process command does
            return name, None, failure_line(name, error)
        return name, text, f"{summary} [worker {os.getpid()}]"


def transcribe_on_ray(inputs: list[str], options: TranscribeOptions, formats: tuple[str, ...], output_dir: Path,
                      *, workers: int, address: str | None = None, quiet: bool = False, restart: bool = False) -> int:
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as error:
        raise TingxieError(f"--ray-workers needs the ray extra: pip install 'tingxie[ray]' ({error})") from error
    import psutil

    if "-" in inputs:
        raise OptionError("--ray-workers reads files, not standard input")
    per_worker = worker_options(options, workers, cpus=usable_cpus(), available_bytes=psutil.virtual_memory().available)
    if address is not None:
        _check_reachable(address)
    try:
        if address is None:
            ray.init(num_cpus=max(workers, usable_cpus()), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except Exception as error:  # noqa: BLE001 - Ray's own errors (no cluster at the address, no shared memory ...)
        raise TingxieError(f"could not start or join Ray ({'local' if address is None else address}): {error}") from error
    try:
        actor = ray.remote(num_cpus=1)(Worker)
        actors = [actor.remote(per_worker) for _ in range(workers)]
        order = sorted(inputs, key=_size, reverse=True)  # longest first: no long file left for last
        failures = 0
        try:
            errors = [e for e in ray.get([a.ready.remote() for a in actors]) if e is not None]
            if errors:
                print(f"tingxie: error: {errors[0]}", file=sys.stderr)
                return 2
            pool = ActorPool(actors)
            for name, text, line in pool.map_unordered(
                    lambda a, name: a.transcribe.remote(name, formats, str(output_dir), restart), order):
                if text is None:
                    failures += 1
                    print(line, file=sys.stderr)
                    continue
                print(text, flush=True)
                if not quiet:
                    print(line, file=sys.stderr)
        except ray.exceptions.RayActorError as error:  # a worker died (killed, out of host memory, a crash)
            cause = error.__cause__ or error
            print(f"tingxie: error: a Ray worker failed: {cause}", file=sys.stderr)
            return 2
        return 1 if failures else 0
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once where nothing listens at a host:port address: Ray itself retries for
    minutes before it gives up (seen: over 3 minutes for a closed port)."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", address)
    if match is None:  # "auto" and other forms: Ray's own resolution
        return
    try:
        socket.create_connection((match.group(1), int(match.group(2))), timeout=timeout_s).close()
    except OSError as error:
        raise TingxieError(f"could not start or join Ray ({address}): nothing answers there ({error})") from error


def _size(name: str) -> int:
    try:
        return os.path.getsize(name)
    except OSError:
        return 0
