"""A CPU batch's items encoded side by side, one intra-op thread each (funasr_support.parallel).

With two threads the backend encodes items concurrently, then runs the predictor and decoder on
the batch with all threads; every item's tokens, words and times must equal the one-thread
sequential path's, the workers must really run on one intra-op thread in the caller's inference
mode and precision, and torch's thread count must come back afterwards.
"""

from __future__ import annotations

import threading

import pytest

pytest_plugins = ["conftest_paraformer"]
from conftest_paraformer import poison_reduced_encode  # noqa: E402
import funasr  # noqa: F401  (the test install has the funasr extra: missing fails, never skips)
import torch

from tingxie.backends.paraformer.parallel import map_side_by_side, plan_side_by_side  # noqa: E402
from tingxie.backends.paraformer.precision import cpu_has_bf16  # noqa: E402


def record_calls(monkeypatch, model, names, calls):
    """Wrap model methods to note, per call, the thread and the torch state it ran under."""
    for name in names:
        method = getattr(model, name)

        def wrapper(*args, _method=method, _name=name, **kwargs):
            calls.append({"name": _name, "thread": threading.get_ident(), "threads": torch.get_num_threads(),
                          "inference": torch.is_inference_mode_enabled(),
                          "autocast": torch.is_autocast_enabled("cpu")})
            return _method(*args, **kwargs)

        monkeypatch.setattr(model, name, wrapper)


def as_tuples(results):
    return [(r.tokens, r.words, r.times) for r in results]


@pytest.fixture(scope="module")
def two_threads(paraformer_dir, make_paraformer):
    backend = make_paraformer(paraformer_dir, threads=2)
    assert backend.item_workers == 2
    return backend


def test_side_by_side_equals_one_thread_sequential(paraformer, two_threads, zh_clips, monkeypatch):
    clips = list(zh_clips.values())
    batch = clips + clips[::-1][:3]  # 8 items, repeats in other positions
    assert paraformer.item_workers == 1
    expected = as_tuples(paraformer.recognise(batch))  # one thread, one item after another
    calls = []
    record_calls(monkeypatch, two_threads.asr.model, ("encode", "calc_predictor", "cal_decoder_with_predictor"), calls)
    got = as_tuples(two_threads.recognise(batch))
    assert got == expected
    assert all(tokens and times for tokens, _, times in got)
    assert torch.get_num_threads() == 2  # restored after the workers

    main = threading.get_ident()
    encodes = [c for c in calls if c["name"] == "encode"]
    assert len(encodes) == len(batch)
    assert len({c["thread"] for c in encodes}) == 2 and main not in {c["thread"] for c in encodes}
    assert all(c["threads"] == 1 and c["inference"] for c in encodes)
    # the rest: one batch on the caller's thread, with all its threads
    rest = [c for c in calls if c["name"] != "encode"]
    assert [c["name"] for c in rest] == ["calc_predictor", "cal_decoder_with_predictor"]
    assert all(c["thread"] == main and c["threads"] == 2 for c in rest)


def test_one_thread_runs_everything_on_the_callers_thread(paraformer, zh_clips, monkeypatch):
    calls = []
    record_calls(monkeypatch, paraformer.asr.model, ("encode", "calc_predictor"), calls)
    paraformer.recognise(list(zh_clips.values())[:3])
    assert {c["thread"] for c in calls} == {threading.get_ident()}
    assert [c["name"] for c in calls].count("calc_predictor") == 1  # one batch


def test_worker_error_is_raised_and_threads_restored():
    torch.set_num_threads(2)
    seen = []

    def work(x):
        seen.append(torch.get_num_threads())
        if x == 3:
            raise ValueError("item 3")
        return torch.ones(4).sum().item() * x

    assert map_side_by_side(work, [1, 2], 2, cost=lambda x: 1) == [4.0, 8.0]
    with pytest.raises(ValueError, match="item 3"):
        map_side_by_side(work, [1, 2, 3, 4], 2, cost=lambda x: 1)
    assert set(seen) == {1}
    assert torch.get_num_threads() == 2


def test_plan_runs_side_by_side_only_where_it_balances():
    assert plan_side_by_side([29.6, 28.5], 2) == 2
    assert plan_side_by_side([29.6, 1.8], 2) == 0  # the long one alone on one thread: slower
    assert plan_side_by_side([12.4, 29.6, 28.5], 2) == 2  # the pair beside each other, 12.4 s on both threads
    assert plan_side_by_side([12.4, 10.5, 7.2, 5.2], 2) == 4  # 12.4 + 5.2 beside 10.5 + 7.2
    assert plan_side_by_side([5.0, 5.0, 5.0], 1) == plan_side_by_side([5.0], 2) == 0


def test_unbalanced_batch_runs_its_short_item_on_all_threads(paraformer, two_threads, zh_clips, monkeypatch):
    import numpy as np

    clips = list(zh_clips.values())
    batch = [np.concatenate(clips[:4]), np.concatenate(clips[1:]), clips[-1]]  # 27.5, 26.9, 5.0 s
    expected = as_tuples(paraformer.recognise(batch))
    calls = []
    record_calls(monkeypatch, two_threads.asr.model, ("encode",), calls)
    assert as_tuples(two_threads.recognise(batch)) == expected
    main = threading.get_ident()
    assert sorted((c["thread"] == main, c["threads"]) for c in calls) == [(False, 1), (False, 1), (True, 2)]


def test_bf16_workers_run_under_autocast_and_the_nan_guard_holds(paraformer, paraformer_dir, zh_clips,
                                                                make_paraformer, monkeypatch):
    """Autocast is per thread: each encoding worker enters the precision's context. A NaN in the
    workers' encoder outputs sends the batch back to fp32, tokens and times then fp32's."""
    if not cpu_has_bf16():
        pytest.skip("this CPU has neither AVX512-BF16 nor AMX")
    reduced = make_paraformer(paraformer_dir, compute_type="bfloat16", threads=2)
    model = reduced.asr.model
    clips = list(zh_clips.values())[:4]
    calls = []
    record_calls(monkeypatch, model, ("encode", "cal_decoder_with_predictor"), calls)
    reduced.recognise(clips)
    assert [c["name"] for c in calls] == ["encode"] * len(clips) + ["cal_decoder_with_predictor"]
    assert all(c["autocast"] for c in calls)
    assert all(c["threads"] == 1 and c["thread"] != threading.get_ident() for c in calls[:-1])

    poison_reduced_encode(monkeypatch, model)
    calls.clear()
    blstm_autocast = []
    lstm = next(m for m in model.predictor.modules() if isinstance(m, torch.nn.LSTM))
    hook = lstm.register_forward_hook(lambda *_: blstm_autocast.append(torch.is_autocast_enabled("cpu")))
    try:
        got = reduced.recognise(clips)
    finally:
        hook.remove()
    assert blstm_autocast == [False]  # the NaN stops the bf16 pass before the predictor
    assert reduced.precision.nan_fallbacks == 1
    assert [c["autocast"] for c in calls if c["name"] == "encode"] == [True] * len(clips) + [False] * len(clips)
    assert [c["autocast"] for c in calls if c["name"] == "cal_decoder_with_predictor"] == [False]
    assert torch.get_num_threads() == 2
    fp32 = paraformer.recognise(clips)  # one thread
    assert [(r.tokens, r.times) for r in got] == [(r.tokens, r.times) for r in fp32]
