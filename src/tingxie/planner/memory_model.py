"""Peak memory of one batch as a function of its shape, and fitting that function to a profile.

    bytes = fixed + per_item_s * (B * T) + per_item_s2 * (B * T * T)

B is the batch size and T the padded length of each item in seconds (the window, for Whisper).
`fixed` covers weights and workspace, the linear term activations and caches that grow with
frames, the quadratic term attention scores. All three are kept >= 0, so predictions never
go negative and never fall as a batch grows: the planners rely on that to stop growing early.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

from tingxie.planner.shapes import InputShape

DEFAULT_MARGIN = 0.10  # peaks vary run to run with allocator caching and fragmentation


@dataclass(frozen=True)
class MemoryModel:
    fixed: float
    per_item_s: float
    per_item_s2: float

    def __post_init__(self) -> None:
        for name in ("fixed", "per_item_s", "per_item_s2"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"MemoryModel.{name} must be finite and >= 0, not {value!r}")

    def predict(self, batch_size: int, item_s: float) -> int:
        """Peak bytes of a batch of batch_size items each padded to item_s seconds (rounded up)."""
        if batch_size < 0 or item_s < 0:
            raise ValueError(f"batch_size and item_s must be >= 0, not {batch_size}, {item_s}")
        frames = batch_size * item_s
        return math.ceil(self.fixed + self.per_item_s * frames + self.per_item_s2 * frames * item_s)


@dataclass(frozen=True)
class ProfileSample:
    """One measured batch: its shape and the peak memory it took."""

    batch_size: int
    item_s: float
    peak_bytes: int


def min_budget(shape: InputShape, model: MemoryModel) -> int:
    """The smallest budget that runs everything: one item of the longest length the model takes."""
    return model.predict(1, shape.max_item_s)


def format_bytes(n: int | float) -> str:
    """'512 B', '1.5 GiB', '412.3 MiB'. Lives here because the planner may not import tingxie.memory.sizes."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n < 1024:
        return f"{sign}{int(n)} B"
    units = ("KiB", "MiB", "GiB", "TiB", "PiB")
    value = float(n)
    for k, unit in enumerate(units):
        value = n / 1024 ** (k + 1)
        # Move up a unit when rounding would print '1024.0' of this one.
        if round(value, 1) < 1024 or k == len(units) - 1:
            return f"{sign}{value:.1f} {unit}"
    raise AssertionError("unreachable")


def fit_memory_model(samples: Sequence[ProfileSample], margin: float = DEFAULT_MARGIN) -> MemoryModel:
    """Non-negative least squares fit of the three coefficients, then scaled up by 1 + margin.

    With three unknowns, exact NNLS is cheap by enumeration: the optimum is the ordinary least
    squares fit on some subset of the terms whose coefficients all come out >= 0, so fit every
    subset and keep the best feasible one (the smaller subset on a tie, e.g. when every sample
    has the same T and the two growing terms cannot be told apart). The margin (10 % by default)
    absorbs run-to-run variation of the peak, which is measured, not derived.
    """
    if not samples:
        raise ValueError("fit_memory_model needs at least one profile sample")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, not {margin}")
    rows = [(1.0, s.batch_size * s.item_s, s.batch_size * s.item_s * s.item_s) for s in samples]
    ys = [float(s.peak_bytes) for s in samples]
    # Scale every column and the target to at most 1 so the normal equations stay well conditioned.
    col_scale = [max(abs(r[k]) for r in rows) or 1.0 for k in range(3)]
    y_scale = max(abs(y) for y in ys) or 1.0
    xs = [[r[k] / col_scale[k] for k in range(3)] for r in rows]
    ys = [y / y_scale for y in ys]

    best_coef = [0.0, 0.0, 0.0]
    best_residual = sum(y * y for y in ys)  # the empty subset: predict zero
    for size in (1, 2, 3):
        for subset in combinations(range(3), size):
            coef = _least_squares([[x[k] for k in subset] for x in xs], ys)
            if coef is None or min(coef) < 0:
                continue
            full = [0.0, 0.0, 0.0]
            for k, c in zip(subset, coef):
                full[k] = c
            if not all(math.isfinite(full[k] * y_scale / col_scale[k]) for k in range(3)):
                continue  # a term whose feature is all but zero in every sample: not measurable
            residual = sum((y - sum(f * v for f, v in zip(full, x))) ** 2 for x, y in zip(xs, ys))
            if residual < best_residual * (1 - 1e-9) - 1e-18:
                best_coef, best_residual = full, residual
    scale = (1 + margin) * y_scale
    return MemoryModel(*(max(0.0, best_coef[k] * scale / col_scale[k]) for k in range(3)))


def _least_squares(x: list[list[float]], y: list[float]) -> list[float] | None:
    """Solve the normal equations by Gaussian elimination; None when the columns are dependent."""
    n = len(x[0])
    a = [[sum(r[i] * r[j] for r in x) for j in range(n)] + [sum(r[i] * v for r, v in zip(x, y))] for i in range(n)]
    tolerance = 1e-12 * max(a[i][i] for i in range(n))
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) <= tolerance:
            return None
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(n):
            if r != col:
                factor = a[r][col] / a[col][col]
                a[r] = [v - factor * p for v, p in zip(a[r], a[col])]
    return [a[i][n] / a[i][i] for i in range(n)]
