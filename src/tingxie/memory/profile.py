"""The start-up profile run: measure what batches of a few shapes add to memory, fit a model.

As vLLM does at start-up, tingxie runs the loaded model on synthetic input and measures, rather
than derives, the memory a batch takes. The fitted MemoryModel then sizes every batch.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tingxie import SAMPLE_RATE, __version__
from tingxie.backends.base import Backend, BackendOutOfMemory
from tingxie.errors import OutOfMemoryError
from tingxie.models.cache_dir import cache_dir
from tingxie.planner.memory_model import DEFAULT_MARGIN, MemoryModel, ProfileSample, fit_memory_model, format_bytes
from tingxie.segments import AudioSegment
from tingxie.planner.shapes import InputShape, ShapeRule
from tingxie.memory import cache
from tingxie.memory.budget import default_budget, working_budget
from tingxie.memory.probes import MemoryProbe
from tingxie.memory.signal import speech_bursts

__all__ = [
    "ProfileSamples",
    "default_budget",
    "default_shapes",
    "fit_profile",
    "load_or_profile",
    "model_file_key",
    "profile_backend",
    "working_budget",
]

log = logging.getLogger(__name__)

# Whisper pads every item to its window, so only B varies and memory is linear in it;
# doubling sizes reach 8 (2x short of the planner's default cap of 16) in 15 windows.
FIXED_WINDOW_BATCH_SIZES = (1, 2, 4, 8)
# Variable lengths: features (1, B*T, B*T^2) of these five are of rank 3, so the linear
# (frames) and quadratic (attention) terms are told apart; (1, 30) anchors the longest items.
VARIABLE_SHAPES = ((1, 5.0), (4, 5.0), (1, 15.0), (2, 15.0), (1, 30.0))

Shape = tuple[int, float]
Signal = Callable[[float], np.ndarray]


class ProfileSamples(list):
    """The measured samples, plus the shapes that ran out of memory (never measured).

    An out-of-memory shape bounds the batch sizes that can run; every shape at least as large
    in both B and T is skipped after it.
    """

    def __init__(self, samples=(), out_of_memory: Sequence[Shape] = ()):
        super().__init__(samples)
        self.out_of_memory: list[Shape] = list(out_of_memory)


def default_shapes(shape: InputShape) -> list[Shape]:
    if shape.rule is ShapeRule.FIXED_WINDOW:
        return [(b, shape.max_item_s) for b in FIXED_WINDOW_BATCH_SIZES]
    return sorted({(b, min(t, shape.max_item_s)) for b, t in VARIABLE_SHAPES})


def profile_backend(
    backend: Backend,
    probe: MemoryProbe,
    shapes: Sequence[Shape] | None = None,
    *,
    signal: Signal = speech_bursts,
) -> ProfileSamples:
    """Run one batch per (batch_size, item_seconds) shape and measure the memory each adds.

    The smallest shape runs once first, unmeasured: one-time allocations (thread pools,
    lazily built kernels) then sit in the resident baseline instead of the first sample,
    where they would tilt the fit (half of whisper-tiny.en's first batch, 60 of 120 MiB).

    Each sample is the batch's peak less the resident bytes before the first measured batch,
    not before this one: allocators keep part of a batch's memory cached for the next, which
    reuses it, so a difference from just before the call misses it. Measured on whisper-tiny.en
    (int8, CPU): 8 items run after 1, 2 and 4 peaked 572 MiB over the bytes just before them
    but 596 MiB over the baseline, and 597 MiB when run alone after the warm-up.

    Shapes run cheapest first; after BackendOutOfMemory, larger shapes are skipped.
    """
    shapes = _checked_shapes(backend.shape, default_shapes(backend.shape) if shapes is None else shapes)
    result = ProfileSamples()
    # one signal per item length, made once and before the baseline (so none counts in a sample):
    # synthesising speech costs more than a small model's batch
    signals = {item_s: signal(item_s) for _, item_s in shapes}
    try:
        backend.transcribe_batch(_batch(shapes[0][0], signals[shapes[0][1]]))
    except BackendOutOfMemory as error:
        log.warning("out of memory warming up at %d x %.1f s: %s", *shapes[0], error)
        result.out_of_memory.append(shapes[0])
        return result
    gc.collect()
    probe.reset_peak()  # lets probes drop allocator caches, so the baseline holds no garbage
    baseline = probe.current_bytes()
    for batch_size, item_s in shapes:
        if any(batch_size >= b and item_s >= t for b, t in result.out_of_memory):
            continue
        batch = _batch(batch_size, signals[item_s])
        gc.collect()  # Python garbage from the last batch must not count against this one
        started = time.perf_counter()
        try:
            with probe.measure() as measured:
                backend.transcribe_batch(batch)
        except BackendOutOfMemory as error:
            log.warning("out of memory profiling %d x %.1f s: %s", batch_size, item_s, error)
            result.out_of_memory.append((batch_size, item_s))
            continue
        added = max(0, measured.peak_bytes - baseline)
        padded_s = backend.shape.padded_seconds([item_s] * batch_size) / batch_size
        result.append(ProfileSample(batch_size, padded_s, added))
        log.debug("profiled %d x %.1f s: %s in %.2f s", batch_size, item_s, format_bytes(added),
                  time.perf_counter() - started)
    return result


def fit_profile(samples: Sequence[ProfileSample], margin: float = DEFAULT_MARGIN) -> MemoryModel:
    """fit_memory_model, except that too few shapes are fitted conservatively.

    One measured shape cannot tell a fixed cost from a per-item one, and the fit would then
    favour the fixed term and predict no growth with batch size; so all of the peak is charged
    per item-second, which over-predicts every larger batch instead.
    """
    if not samples:
        raise OutOfMemoryError("the memory profile measured no batch: even the smallest ran out of memory")
    if len({(s.batch_size * s.item_s, s.item_s) for s in samples}) >= 2:
        return fit_memory_model(samples, margin)
    s = max(samples, key=lambda s: s.peak_bytes)
    return MemoryModel(0.0, (1 + margin) * s.peak_bytes / (s.batch_size * s.item_s), 0.0)


def model_file_key(path: Path) -> dict[str, Any]:
    """Identify model weights by path, total size and newest mtime, so replaced weights re-profile."""
    path = Path(path)
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    stats = [p.stat() for p in files]
    return {
        "model_path": str(path.resolve()),
        "model_bytes": sum(s.st_size for s in stats),
        "model_mtime_ns": max((s.st_mtime_ns for s in stats), default=0),
    }


def load_or_profile(
    backend: Backend,
    probe: MemoryProbe,
    key_parts: dict[str, Any],
    cache_root: Path | None = None,
    *,
    shapes: Sequence[Shape] | None = None,
    signal: Signal = speech_bursts,
) -> MemoryModel:
    """The backend's memory model from the profile cache, or profiled now and cached.

    key_parts names everything that changes memory use: model path, size and mtime (see
    model_file_key), device, compute type, beam size, threads. The tingxie version, probe
    device, shapes and signal are added here. Any change means a new file, so a new profile;
    a file that cannot be read is profiled again and rewritten. A profile cut short by an
    out-of-memory error is not cached: it reflects how much was free at that moment.
    """
    shapes = _checked_shapes(backend.shape, default_shapes(backend.shape) if shapes is None else shapes)
    path, key = _cache_entry(backend, probe, key_parts, cache_root, shapes, signal)
    model = cache.read_model(path, key)
    if model is not None:
        return model
    started = time.perf_counter()
    samples = profile_backend(backend, probe, shapes, signal=signal)
    model = fit_profile(samples)
    elapsed = time.perf_counter() - started
    log.info("memory profile of %s on %s took %.1f s: %s + %s per item-second",
             backend.name, probe.device, elapsed, format_bytes(model.fixed), format_bytes(model.per_item_s))
    if not samples.out_of_memory:
        cache.write_model(path, key, model, {
            "samples": [[s.batch_size, s.item_s, s.peak_bytes] for s in samples],
            "profile_s": round(elapsed, 3),
        })
    return model


def cached_model(backend: Backend, probe: MemoryProbe, key_parts: dict[str, Any], cache_root: Path | None = None,
                 *, shapes: Sequence[Shape] | None = None, signal: Signal = speech_bursts) -> MemoryModel | None:
    """The cached memory model load_or_profile would use, or None: never profiles."""
    shapes = _checked_shapes(backend.shape, default_shapes(backend.shape) if shapes is None else shapes)
    return cache.read_model(*_cache_entry(backend, probe, key_parts, cache_root, shapes, signal))


def _cache_entry(backend, probe, key_parts, cache_root, shapes, signal) -> tuple[Path, dict[str, Any]]:
    key = cache.normalize_key({
        **key_parts,
        "backend": backend.name,
        "probe_device": probe.device,
        "shapes": [[b, t] for b, t in shapes],
        "signal": _signal_name(signal),
        "margin": DEFAULT_MARGIN,
        "tingxie": __version__,
    })
    return cache.cache_path((cache_root or cache_dir() / "profiles"), key), key


def _checked_shapes(shape: InputShape, shapes: Sequence[Shape]) -> list[Shape]:
    if not shapes:
        raise ValueError("a memory profile needs at least one shape")
    out = []
    for b, t in shapes:
        if int(b) != b or b < 1 or not (math.isfinite(t) and 0 < t <= shape.max_item_s):
            raise ValueError(f"profile shape ({b}, {t}) needs batch size >= 1 and 0 < seconds <= {shape.max_item_s}")
        out.append((int(b), float(t)))
    return sorted(set(out), key=lambda s: (s[0] * s[1], s[1]))  # cheapest first, so OOM stops growth


def _signal_name(signal: Signal) -> str:
    """A name that is the same in every process (a partial's repr holds a memory address)."""
    func = getattr(signal, "func", None)
    if func is not None:
        args = [repr(a) for a in signal.args] + [f"{k}={v!r}" for k, v in sorted(signal.keywords.items())]
        return f"{_signal_name(func)}({', '.join(args)})"
    return f"{getattr(signal, '__module__', '')}.{getattr(signal, '__qualname__', type(signal).__name__)}"


def _batch(batch_size: int, samples) -> list[AudioSegment]:
    return [AudioSegment(i, 0.0, len(samples) / SAMPLE_RATE, samples) for i in range(batch_size)]
