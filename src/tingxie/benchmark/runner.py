"""Run benchmark cases, each run in a fresh child process, and collect their figures.

Peak RSS is read from outside: os.wait4 returns the child's rusage, whose ru_maxrss is the
exact kernel high-water mark (no sampling). On Linux that figure is carried over exec from the
forking parent, so it is max(parent RSS at spawn, child peak); the parent therefore imports
nothing heavy, and each run records the parent's RSS at spawn so a floor can be recognised.
It also covers the child's own waited-for children (tingxie's memory-profile process), which is
what a user of the case would see. The child's VmHWM is also polled from /proc while it runs
(hwm_bytes): that figure has no floor from the parent, and is what `tingxie bench` reports.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tingxie.benchmark.evaluation import normalize_english, word_error_rate
from tingxie.memory.resources import current_rss_bytes, proc_status_kib
from tingxie.benchmark.cases import CaseSpec


class CaseFailed(RuntimeError):
    pass


class CaseRejected(CaseFailed):
    """The case stopped on an error the user can act on (tingxie.errors); str() is its one line."""


@dataclass
class RunRecord:
    """One run of one case."""

    wall_s: float  # the transcription, timed by the child
    load_s: float  # model and VAD load, timed by the child
    process_s: float  # the whole child process, timed by the parent
    peak_rss_bytes: int  # wait4 ru_maxrss of the child
    hwm_bytes: int | None  # the child's VmHWM polled from outside (no floor from the parent), None off Linux
    self_hwm_bytes: int | None  # the child's own VmHWM (cross-check)
    parent_rss_bytes: int  # the parent's RSS at spawn: the floor of peak_rss_bytes
    audio_s: float
    text: str
    extra: dict = field(default_factory=dict)
    wer: float | None = None
    # user + system CPU seconds of the whole child (wait4's rusage, its own waited-for children
    # in it): steadier than process_s on a shared machine, where waiting for a core is not work
    cpu_s: float | None = None
    run_cpu_s: float | None = None  # the transcription's CPU seconds, read by the child (no load)


@dataclass
class CaseResult:
    spec: CaseSpec
    runs: list[RunRecord] = field(default_factory=list)
    prepared: RunRecord | None = None  # the unmeasured first load, when run_cases prepared it

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def wall_s(self) -> list[float]:
        return [run.wall_s for run in self.runs]

    @property
    def median_wall_s(self) -> float:
        return statistics.median(self.wall_s)

    @property
    def median_load_s(self) -> float:
        return statistics.median(run.load_s for run in self.runs)

    @property
    def audio_s(self) -> float:
        return self.runs[0].audio_s

    @property
    def speed(self) -> float:
        """Audio seconds per wall second, from the median wall time."""
        return self.audio_s / self.median_wall_s

    @property
    def peak_rss_bytes(self) -> int:
        return max(run.peak_rss_bytes for run in self.runs)

    @property
    def wer(self) -> float | None:
        rates = [run.wer for run in self.runs if run.wer is not None]
        return statistics.median(rates) if rates else None


def english_wer(reference: str, hypothesis: str) -> float:
    """Corpus WER of one whole normalised hypothesis against one whole normalised reference."""
    return word_error_rate([normalize_english(reference)], [normalize_english(hypothesis)])


def run_once(
    spec: CaseSpec,
    *,
    prepare: bool = False,
    python: str = sys.executable,
    timeout_s: float | None = None,
    env: dict[str, str] | None = None,
) -> RunRecord:
    """Run spec once in a new Python process; raise CaseFailed with its stderr if it fails.

    prepare: load the case only (see tingxie.benchmark.case); the record has no text.
    env: the child's whole environment (default: this one), e.g. a PYTHONPATH to a source snapshot."""
    with tempfile.TemporaryDirectory(prefix="tingxie-bench-") as tmp:
        result_path, log_path = Path(tmp, "result.json"), Path(tmp, "stderr.txt")
        command = [python, "-m", "tingxie.benchmark.case", spec.to_json(), str(result_path)]
        command += ["--prepare"] if prepare else []
        with open(log_path, "wb") as log:
            parent_rss = current_rss_bytes()
            started = time.perf_counter()
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                     env=env)
            killer = threading.Timer(timeout_s, child.kill) if timeout_s else None
            if killer:
                killer.start()
            try:
                status, usage, hwm = _wait_watching_hwm(child.pid)
            finally:
                if killer:
                    killer.cancel()
            child.returncode = os.waitstatus_to_exitcode(status)  # so Popen never waits again
            process_s = time.perf_counter() - started
        data = json.loads(result_path.read_text(encoding="utf-8")) if result_path.is_file() else {}
        if "error" in data:
            raise CaseRejected(f"{spec.name}: {data['error']}")
        if child.returncode != 0 or not data:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise CaseFailed(f"{spec.name}: exit status {child.returncode}\n{tail}")
    return RunRecord(
        wall_s=data["wall_s"],
        load_s=data["load_s"],
        process_s=process_s,
        peak_rss_bytes=_maxrss_bytes(usage.ru_maxrss),
        hwm_bytes=hwm,
        self_hwm_bytes=data.get("self_hwm_bytes"),
        parent_rss_bytes=parent_rss,
        audio_s=data["audio_s"],
        text=data["text"],
        extra=data.get("extra", {}),
        cpu_s=usage.ru_utime + usage.ru_stime,
        run_cpu_s=data.get("run_cpu_s"),
    )


def run_cases(
    specs: list[CaseSpec],
    runs: int,
    *,
    reference: str | None = None,
    scorer: Callable[[str, str], float] = english_wer,
    on_run: Callable[[int, CaseSpec, RunRecord], None] | None = None,
    timeout_s: float | None = None,
    prepare: bool = True,
    env: dict[str, str] | None = None,
) -> list[CaseResult]:
    """Run every case `runs` times, round-robin (run 1 of each, then run 2, ...), so slow drifts
    of the machine fall on all cases alike. Each run is scored against reference when given.

    prepare: first load each case once, unmeasured, so one-time costs (a memory profile written
    to disk, a cold page cache) land on no measured run; that load is kept in .prepared."""
    if len({spec.name for spec in specs}) != len(specs):
        raise ValueError("case names must be unique")
    results = [CaseResult(spec) for spec in specs]
    for result in results if prepare else []:
        result.prepared = run_once(result.spec, prepare=True, timeout_s=timeout_s, env=env)
    for round_ in range(1, runs + 1):
        for result in results:
            record = run_once(result.spec, timeout_s=timeout_s, env=env)
            if reference is not None:
                record.wer = scorer(reference, record.text)
            result.runs.append(record)
            if on_run:
                on_run(round_, result.spec, record)
    return results


def _wait_watching_hwm(pid: int, interval_s: float = 0.02) -> tuple[int, object, int | None]:
    """wait4 the child, reading its VmHWM from /proc meanwhile (as resources.watch_peak_rss
    does, but keeping wait4's rusage): (wait status, rusage, highest VmHWM seen or None)."""
    hwm = None
    while True:
        waited, status, usage = os.wait4(pid, os.WNOHANG)
        if waited == pid:
            return status, usage, hwm
        kib = proc_status_kib(pid, "VmHWM")
        if kib:
            hwm = max(hwm or 0, kib * 1024)
        time.sleep(interval_s)


def _maxrss_bytes(maxrss: int) -> int:
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # Linux reports KiB
