"""Prometheus metrics, written in the text exposition format (version 0.0.4) by hand.

Small enough not to need prometheus_client: counters, gauges read at scrape time, and
histograms with fixed buckets. Everything is guarded by one lock; updates are rare
(per batch, per request), so contention is nil.
"""

from __future__ import annotations

import math
import threading
from typing import Callable

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _escape(value: str) -> str:
    """A label value as the text format quotes it (a newline is dropped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._help: dict[str, tuple[str, str]] = {}  # name -> (type, help)
        self._values: dict[str, dict[tuple, float]] = {}
        self._gauges: dict[str, Callable[[], float]] = {}
        self._histograms: dict[str, tuple[tuple[float, ...], dict[tuple, list[float]]]] = {}

    def counter(self, name: str, help_text: str) -> None:
        self._help[name] = ("counter", help_text)
        self._values.setdefault(name, {})

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self._help[name] = ("gauge", help_text)
        self._gauges[name] = read

    def histogram(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self._help[name] = ("histogram", help_text)
        self._histograms[name] = (buckets, {})

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values[name]
            series[key] = series.get(key, 0.0) + amount

    def observe(self, name: str, value: float, **labels: str) -> None:
        buckets, series = self._histograms[name]
        key = tuple(sorted(labels.items()))
        with self._lock:
            counts = series.setdefault(key, [0.0] * (len(buckets) + 2))  # buckets..., +Inf, sum
            for i, bound in enumerate(buckets):
                if value <= bound:
                    counts[i] += 1
            counts[len(buckets)] += 1
            counts[-1] += value

    def value(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values[name].get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        gauges = {name: read() for name, read in self._gauges.items()}  # outside the lock: they take others
        with self._lock:
            for name, (kind, help_text) in self._help.items():
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
                if kind == "counter":
                    for key, value in sorted(self._values[name].items()):
                        lines.append(f"{name}{_labels(key)} {_number(value)}")
                elif kind == "gauge":
                    lines.append(f"{name} {_number(gauges[name])}")
                else:
                    buckets, series = self._histograms[name]
                    for key, counts in sorted(series.items()):
                        for bound, count in zip((*buckets, math.inf), counts):
                            lines.append(f"{name}_bucket{_labels(key + (('le', _number(bound)),))} {_number(count)}")
                        lines.append(f"{name}_sum{_labels(key)} {_number(counts[-1])}")
                        lines.append(f"{name}_count{_labels(key)} {_number(counts[len(buckets)])}")
        return "\n".join(lines) + "\n"
