"""funasr_support.fire: FunASR's timestamp integrate-and-fire, bit for bit, without a torch op per frame."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import funasr  # noqa: F401  (the test install has the funasr extra: missing fails, never skips)
import torch
from funasr.models.bicif_paraformer.cif_predictor import cif_wo_hidden as batched_cif
from funasr.utils.timestamp_tools import cif_wo_hidden as item_cif
from funasr.utils.timestamp_tools import ts_prediction_lfr6_standard

from tingxie.backends.paraformer.fire import FIRE_THRESHOLD, fires, timestamp_inputs


@settings(max_examples=60, deadline=None)
@given(batch=st.integers(1, 4), frames=st.integers(1, 400), scale=st.sampled_from([0.05, 0.3, 1.0, 2.5]),
       seed=st.integers(0, 2**31 - 1))
def test_fires_equal_funasr_bit_for_bit(batch, frames, scale, seed):
    """Random weights, some above the threshold (a frame that fires twice), all float32."""
    alphas = torch.from_numpy(np.random.default_rng(seed).random((batch, frames), dtype=np.float32) * scale)
    for threshold in (FIRE_THRESHOLD, 1.0 - 1e-4 - 1e-4):
        assert torch.equal(fires(alphas, threshold), batched_cif(alphas.clone(), threshold))
        assert torch.equal(fires(alphas[:1], threshold), item_cif(alphas[:1].clone(), threshold))


def test_weights_summing_exactly_to_the_threshold_fire_as_in_funasr():
    """Sums that land on the threshold itself: the comparison must be float32's, as torch's."""
    alphas = torch.full((2, 300), 0.33333334, dtype=torch.float32)
    alphas[1, ::7] = FIRE_THRESHOLD
    assert torch.equal(fires(alphas, FIRE_THRESHOLD), batched_cif(alphas.clone(), FIRE_THRESHOLD))


@pytest.mark.parametrize("tokens", [0, 1, 12, 40, 80])
def test_timestamps_through_timestamp_inputs_equal_funasr(tokens, monkeypatch):
    """ts_prediction_lfr6_standard on what timestamp_inputs hands it equals it on the raw
    weights, whether the peaks already count the tokens plus one or it must re-fire; and
    FunASR's own frame loop is not run again."""
    import funasr.utils.timestamp_tools as tools

    rng = np.random.default_rng(tokens)
    alphas = torch.from_numpy(rng.random(900, dtype=np.float32) * 0.1)
    peaks = item_cif(alphas[None].clone(), FIRE_THRESHOLD)[0]
    chars = [f"t{i}" for i in range(tokens)]
    expected = ts_prediction_lfr6_standard(alphas.clone(), peaks.clone(), list(chars))
    ours_alphas, ours_peaks = timestamp_inputs(alphas.clone(), peaks.clone(), chars)
    loops = []
    monkeypatch.setattr(tools, "cif_wo_hidden", lambda *a, **k: loops.append(1) or item_cif(*a, **k))
    assert ts_prediction_lfr6_standard(ours_alphas, ours_peaks, list(chars)) == expected
    assert not loops
