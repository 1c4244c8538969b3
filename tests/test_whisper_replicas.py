"""Whisper on a CPU as single-threaded replicas side by side: the same results as one replica."""

import threading

import pytest

from tingxie.audio import decode_audio
from tingxie.backends import whisper
from tingxie.backends.whisper import WhisperBackend, cpu_replicas, split_evenly
from tingxie.models import resolve_model
from tingxie.options import DecodeOptions, ModelOptions
from tingxie.segments import AudioSegment


@pytest.mark.parametrize("count, parts, sizes", [
    (8, 2, [4, 4]), (7, 2, [4, 3]), (2, 4, [1, 1]), (1, 2, [1]), (10, 4, [3, 3, 2, 2]), (5, 1, [5]),
])
def test_split_evenly_keeps_order_and_balances(count, parts, sizes):
    items = list(range(count))
    split = split_evenly(items, parts)
    assert [len(p) for p in split] == sizes
    assert [x for p in split for x in p] == items


@pytest.mark.parametrize("threads, requested, expected", [
    (2, 0, (2, 1)), (1, 0, (1, 1)), (16, 0, (4, 4)), (8, 1, (1, 8)), (6, 3, (3, 2)), (2, 4, (4, 1)),
])
def test_cpu_replicas_splits_the_threads(threads, requested, expected):
    assert cpu_replicas(threads, requested) == expected


def _backend(replicas: int) -> WhisperBackend:
    model = resolve_model("whisper-tiny.en")
    return WhisperBackend(model.path, model.name, ModelOptions(name="whisper-tiny.en", device="cpu", threads=2,
                                                              replicas=replicas), DecodeOptions())


def test_two_replicas_give_exactly_one_replicas_results_in_order(data_dir, monkeypatch):
    clips = sorted((data_dir / "ljspeech").glob("*.flac"))[:4] + [data_dir / "jfk.flac"]
    batch = []
    for index, path in enumerate(clips):
        samples = decode_audio(path)
        batch.append(AudioSegment(index, 10.0 * index, 10.0 * index + len(samples) / 16000, samples))

    one = _backend(1)
    assert one.replicas == 1
    expected = one.transcribe_batch(batch)

    two = _backend(2)
    assert two.replicas == 2
    seen = []
    real = WhisperBackend._transcribe
    monkeypatch.setattr(WhisperBackend, "_transcribe",
                        lambda self, part: seen.append((threading.current_thread().name, len(part))) or real(self, part))
    got = two.transcribe_batch(batch)
    assert sorted(size for _, size in seen) == [2, 3]  # the batch ran as two parts ...
    assert all(name.startswith("tingxie-whisper") for name, _ in seen)  # ... on the replicas' threads
    assert [r.index for r in got] == [r.index for r in expected] == list(range(len(batch)))
    assert [r.tokens for r in got] == [r.tokens for r in expected]
    assert [r.pieces for r in got] == [r.pieces for r in expected]


def test_an_out_of_memory_in_one_part_is_reported_as_the_batchs(data_dir, monkeypatch):
    backend = _backend(2)
    samples = decode_audio(data_dir / "jfk.flac")
    batch = [AudioSegment(i, 0.0, 11.0, samples) for i in range(2)]

    def fail_second(self, part):
        if part[0].index == 1:
            raise RuntimeError("CUDA failed with error out of memory")
        return []

    monkeypatch.setattr(WhisperBackend, "_transcribe", fail_second)
    with pytest.raises(whisper.BackendOutOfMemory):
        backend.transcribe_batch(batch)
