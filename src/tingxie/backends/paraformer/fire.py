"""FunASR's timestamp integrate-and-fire, the same float32 arithmetic without a torch op per frame.

CifPredictorV3's timestamps come from `cif_wo_hidden`: a running sum of per-frame weights that
fires where it reaches the threshold and keeps the remainder. FunASR loops over the frames in
torch, four tensor operations a frame, on whatever device the weights are on: for a 60 s segment
(3000 upsampled frames) 58 ms on a CPU, and on a GPU a kernel launch each, which measured 47 %
of a GPU run's recognition time (H100, Paraformer-large, bench/bench_paraformer_cuda.py). Here
the same steps run on NumPy float32 arrays: additions, comparisons and subtractions in float32,
in the same order, so every value is bit-for-bit FunASR's (tests/test_fire.py).

`timestamp_inputs` also takes over ts_prediction_lfr6_standard's re-fire: where the fires do not
number the tokens plus one, FunASR rescales the weights and fires again; done here first with
the fast loop, FunASR's function then finds the count right and goes straight on.
"""

from __future__ import annotations

import numpy as np
import torch

FIRE_THRESHOLD = 1.0 - 1e-4  # ts_prediction_lfr6_standard's peak threshold


def integrate_and_fire(alphas: np.ndarray, threshold: float) -> np.ndarray:
    """FunASR's cif_wo_hidden on a (batch, frames) float32 array: the running sum at each frame
    before the threshold is taken off it."""
    columns = np.ascontiguousarray(np.asarray(alphas, dtype=np.float32).T)  # a frame's weights contiguous
    fires = np.empty_like(columns)
    step = np.float32(threshold)  # torch: ones([batch]) * threshold, in float32
    integrate = np.zeros(columns.shape[1], dtype=np.float32)
    for t, alpha in enumerate(columns):
        integrate = integrate + alpha
        fires[t] = integrate
        integrate = np.where(integrate >= step, integrate - step, integrate)
    return fires.T


def fires(alphas: torch.Tensor, threshold: float) -> torch.Tensor:
    """integrate_and_fire for a CPU tensor (what the batched timestamp head hands over)."""
    return torch.from_numpy(np.ascontiguousarray(integrate_and_fire(alphas.numpy(), threshold)))


def timestamp_inputs(alphas: torch.Tensor, peaks: torch.Tensor, tokens: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """One item's (alphas, peaks) for ts_prediction_lfr6_standard, re-fired here where it would
    re-fire them itself, so that it does not. CPU tensors in, CPU tensors out.

    Where even the re-fired peaks miscount, FunASR would rescale again: the inputs go back as
    they came, and it does so itself (exact, at its own speed).
    """
    count = len(tokens) - (1 if tokens and tokens[-1] == "</s>" else 0)
    if count == 0 or int((peaks >= FIRE_THRESHOLD).sum()) == count + 1:
        return alphas, peaks
    scaled = alphas / (alphas.sum() / (count + 1))  # FunASR's `alphas /= alphas.sum() / (len + 1)`
    refired = fires(scaled[None], FIRE_THRESHOLD)[0]
    if int((refired >= FIRE_THRESHOLD).sum()) == count + 1:
        return scaled, refired
    return alphas, peaks
