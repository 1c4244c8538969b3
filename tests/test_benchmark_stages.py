"""benchmark/stages.py's clocks: wall seconds, or CPU seconds that waiting does not add to."""

import time

import numpy as np

from tingxie.benchmark.stages import Timers, native_threads_cpu_s


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        np.sqrt(np.arange(1000.0))


def test_cpu_timers_count_work_not_waiting():
    wall, cpu = Timers(), Timers(cpu=True)
    for timers in (wall, cpu):
        timers.wrap("sleep", time.sleep)(0.3)
        timers.wrap("work", _busy)(0.3)
    assert wall.seconds["sleep"] >= 0.3 and wall.seconds["work"] >= 0.3
    assert cpu.seconds["sleep"] < 0.05  # a stage waiting on another thread costs nothing
    assert 0 < cpu.seconds["work"] <= wall.seconds["work"] + 0.1
    assert cpu.split(2.0)["seconds"]["other"] == 2.0 - cpu.seconds["sleep"] - cpu.seconds["work"]


def test_native_threads_cpu_leaves_python_threads_out():
    before = native_threads_cpu_s()
    _busy(0.3)  # this (Python) thread's work
    assert native_threads_cpu_s() - before < 0.1
