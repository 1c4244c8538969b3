"""The memory side of planning for one loaded backend: its measured model and the budget.

The profile run happens in a child process that loads the same model: what a batch adds is
then measured on a fresh heap, as it will be in a new run, not on top of whatever the parent
has allocated and freed before (a fragmented heap absorbs part of a batch and the profile
comes out low). The parent reads the child's result from the profile cache.
"""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
from dataclasses import dataclass, field

from tingxie import __version__
from tingxie.backends.base import Backend
from tingxie.memory.budget import default_budget, default_total, working_budget
from tingxie.memory.probes import MemoryProbe
from tingxie.memory.profile import load_or_profile, model_file_key
from tingxie.memory.profile import cached_model
from tingxie.options import TranscribeOptions
from tingxie.errors import OutOfMemoryError
from tingxie.planner import MemoryModel, format_bytes, min_budget
from tingxie.planner.shapes import InputShape, ShapeRule
from tingxie.memory.sizes import parse_memory_budget

log = logging.getLogger(__name__)
PROFILE_TIMEOUT_S = 600
RESERVE_FRACTION = 0.05
CHANGE_SHARE = 0.1  # the working budget is logged when it moves by more than this share


def profile_key(backend: Backend, options: TranscribeOptions) -> dict:
    """What a cached memory profile is valid for: the weights, where and how they run (the
    backend's own key), the decode options that change a batch's peak, and tingxie's version."""
    return {**model_file_key(backend.model_path), **backend.profile_key(), "beam_size": options.decode.beam_size,
            "tingxie": __version__}


@dataclass
class MemoryPlanner:
    model: MemoryModel
    probe: MemoryProbe
    total_budget_bytes: int
    given: str | None = None  # the budget as the user wrote it (--memory-budget), None: the default
    shape: InputShape | None = None  # the backend's: one item of its longest length is the floor
    adaptive: bool = True  # plan under what the device has now, not only what it had at start
    beside_batches: int = 0  # bytes other stages take while batches run (--diarize: the speaker embedder's scratch)
    trace: BudgetTrace = field(default_factory=lambda: BudgetTrace())

    @classmethod
    def profiled(cls, backend, options: TranscribeOptions, *, in_child: bool = True) -> "MemoryPlanner | None":
        """The measured memory model of a real backend and the run's budget; None for a
        backend with no weights to profile (the fake)."""
        if backend.model_path is None:
            return None
        probe = backend.memory_probe()
        key = profile_key(backend, options)
        model = cached_model(backend, probe, key)
        if model is None and in_child and _profile_in_child(options):
            model = cached_model(backend, probe, key)
        if model is None:  # no child could do it (or asked not to): profile here
            model = load_or_profile(backend, probe, key)
        if options.batch.memory_budget is None:
            total = default_budget(probe)
        else:
            total = parse_memory_budget(options.batch.memory_budget, probe.current_bytes() + probe.available_bytes())
        log.info("memory budget %s on %s", format_bytes(total), probe.device)
        return cls(model, probe, total, options.batch.memory_budget, backend.shape,
                   beside_batches=_beside_batches(backend, options))

    def after_batch(self) -> None:
        """Between batches, the allocator's cache of the last batch goes back (MemoryProbe.release_cache)."""
        self.probe.release_cache()

    def fits_smallest_batch(self, shape: InputShape) -> bool:
        """Whether the budget holds one item of the longest length on top of what is resident."""
        return self._usable_bytes() - self.probe.current_bytes() >= min_budget(shape, self.model)

    def check_smallest_batch(self, shape: InputShape) -> None:
        """Fail before any work when the budget cannot hold one item of the longest length on
        top of what is resident now, naming the smallest total budget that would."""
        resident = self.probe.current_bytes()
        needed = min_budget(shape, self.model)
        if self._usable_bytes() - resident < needed:
            smallest = (resident + needed + self.beside_batches) / (1 - RESERVE_FRACTION)
            asked = (f"--memory-budget {self.given} ({format_bytes(self.total_budget_bytes)})" if self.given
                     else f"the default memory budget ({format_bytes(self.total_budget_bytes)}, 70 % of what is free)")
            raise OutOfMemoryError(
                f"{asked} is below the smallest batch: the loaded model and runtime hold {format_bytes(resident)}, "
                f"one {shape.max_item_s:.1f} s item needs {format_bytes(needed)} more; the smallest budget that "
                f"works is {format_bytes(smallest)}"
            )

    def working_budget(self) -> int:
        """What batches may add now, asked before each window.

        The user's budget less what is resident, less a reserve for what moves between the plan
        and the batch (decoded audio, result buffers, the allocator: peaks within 2 % of a budget
        were seen without it). Adaptive: never more than a safe share of what the device has
        free now (another process, model or job may have taken memory since the start: on a CPU
        no split saves a run from the OOM killer), and batches grow again when it comes back.
        Shrinking stops at one item of the longest length, while the user's budget holds that:
        memory this short runs one item at a time rather than failing (an out-of-memory error
        there still splits nothing it cannot)."""
        user_left = working_budget(self._usable_bytes(), self.probe)  # raises if the model fills the budget
        if (self.shape is not None and self.shape.rule is ShapeRule.FIXED_WINDOW
                and user_left < min_budget(self.shape, self.model)):
            # what is resident grew past what the budget leaves a window: say so in the user's numbers
            # (variable-length items are left to the planner: a shorter one may still fit)
            self.check_smallest_batch(self.shape)
        if not self.adaptive:
            return user_left
        resident = self.probe.current_bytes()
        now_total = default_total(resident, self.probe.available_bytes())
        left = min(user_left, int(now_total * (1 - RESERVE_FRACTION)) - resident)
        if self.shape is not None:
            floor = min_budget(self.shape, self.model)
            if left < floor <= user_left:
                left = floor
        self.trace.note(left, user_left)
        return max(1, left)

    def _usable_bytes(self) -> int:
        return int(self.total_budget_bytes * (1 - RESERVE_FRACTION)) - self.beside_batches


def _beside_batches(backend: Backend, options: TranscribeOptions) -> int:
    """What the stages that run beside the batches need (their loaded weights are resident, so
    the probe counts them): the speaker embedder's scratch for the longest segment, with --diarize."""
    if not options.diarize.enabled:
        return 0
    from tingxie.diarize.stage import working_bytes

    return working_bytes(min(options.vad.max_segment_s, backend.shape.max_item_s), options.diarize.speaker_model)


@dataclass
class BudgetTrace:
    """How the working budget moved during a run: for the JSON stats, job status and /metrics."""

    planned: int | None = None  # the last working budget planned with
    lowest: int | None = None
    shrinks: int = 0  # times it fell below what the user's budget allowed (memory taken by others)
    changes: int = 0  # times it moved by more than CHANGE_SHARE since the last logged value
    _logged: int | None = None
    _user_left: int = 0

    def note(self, left: int, user_left: int) -> None:
        was_short = self.planned is not None and self.planned < self._user_left
        self._user_left = user_left
        if left < user_left and not was_short:
            self.shrinks += 1
        self.planned = left
        self.lowest = left if self.lowest is None else min(self.lowest, left)
        if self._logged is None:
            self._logged = left
        elif abs(left - self._logged) > CHANGE_SHARE * max(self._logged, 1):
            self.changes += 1
            log.warning("memory for batches %s: %s (the budget allows %s; what is free now decides)",
                        "shrinks" if left < self._logged else "grows back", format_bytes(left),
                        format_bytes(user_left))
            self._logged = left


def _profile_in_child(options: TranscribeOptions) -> bool:
    # The options travel pickled on stdin: frozen dataclasses, nested, from this same package.
    try:
        done = subprocess.run([sys.executable, "-m", "tingxie.memory.planning"], input=pickle.dumps(options),
                              capture_output=True, timeout=PROFILE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning("memory profile in a child process failed (%s); profiling in this one", error)
        return False
    if done.returncode != 0:
        log.warning("memory profile in a child process failed: %s", done.stderr.decode(errors="replace")[-500:])
    return done.returncode == 0


def _child_main() -> None:
    from tingxie.backends.registry import load_backend

    options: TranscribeOptions = pickle.loads(sys.stdin.buffer.read())
    backend = load_backend(options.model, options.decode)
    probe = backend.memory_probe()
    load_or_profile(backend, probe, profile_key(backend, options))


if __name__ == "__main__":
    _child_main()
