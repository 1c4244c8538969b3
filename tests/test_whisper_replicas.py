"""Whisper on a CPU as single-threaded replicas side by side: the same results as one replica."""

import threading

import pytest

from tingxie.audio.decode import decode_audio
from tingxie.backends.base import BackendOutOfMemory
from tingxie.backends.whisper.backend import WhisperBackend, cpu_replicas
from tingxie.models.registry import resolve_model
from tingxie.options import DecodeOptions, ModelOptions
from tingxie.segments import AudioSegment


@pytest.mark.parametrize("threads, requested, expected", [
    (2, 0, (2, 1)), (1, 0, (1, 1)), (16, 0, (4, 4)), (8, 1, (1, 8)), (6, 3, (3, 2)), (2, 4, (4, 1)),
])
def test_cpu_replicas_splits_the_threads(threads, requested, expected):
    assert cpu_replicas(threads, requested) == expected


def _backend(replicas: int) -> WhisperBackend:
    model = resolve_model("whisper-tiny.en")
    return WhisperBackend(model.path, model.name, ModelOptions(name="whisper-tiny.en", device="cpu", threads=2,
                                                              replicas=replicas), DecodeOptions())


@pytest.mark.slow  # a real model end to end
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
                        lambda self, part, *decode: seen.append((threading.current_thread().name, len(part))) or real(self, part, *decode))
    got = two.transcribe_batch(batch)
    assert [size for _, size in seen] == [1] * len(batch)  # a window a call ...
    assert all(name.startswith("tingxie-whisper") for name, _ in seen)  # ... on the replicas' threads
    assert len({name for name, _ in seen}) == 2
    assert [r.index for r in got] == [r.index for r in expected] == list(range(len(batch)))
    assert [r.tokens for r in got] == [r.tokens for r in expected]
    assert [r.pieces for r in got] == [r.pieces for r in expected]


def test_an_out_of_memory_in_one_window_fails_the_batch_with_nothing_left_running(data_dir, monkeypatch):
    backend = _backend(2)
    samples = decode_audio(data_dir / "jfk.flac")
    batch = [AudioSegment(i, 0.0, 11.0, samples) for i in range(6)]
    started, finished = [], []

    def fail_first(self, part, *decode):
        started.append(part[0].index)
        if part[0].index == 0:
            raise RuntimeError("CUDA failed with error out of memory")
        threading.Event().wait(0.2)  # long enough that the batch fails before most windows start
        finished.append(part[0].index)
        return []

    monkeypatch.setattr(WhisperBackend, "_transcribe", fail_first)
    with pytest.raises(BackendOutOfMemory):
        backend.transcribe_batch(batch)
    running_after = set(started) - set(finished) - {0}
    assert not running_after  # every window that had started was waited for
    assert len(started) < len(batch)  # and the ones not yet started were cancelled
