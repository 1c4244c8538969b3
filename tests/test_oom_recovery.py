"""Out-of-memory recovery on the real Whisper backend, with the failure injected in CTranslate2's call."""

import threading

import numpy as np
import pytest

from tingxie.backends.whisper.backend import WhisperBackend
from tingxie.engine.executor import Executor
from tingxie.models.registry import resolve_model
from tingxie.options import DecodeOptions, ModelOptions
from tingxie.segments import AudioSegment


class FailingModel:
    """Wraps the loaded CTranslate2 model; encode() fails as CUDA does above a batch size, and
    on its first `fail_first` calls whatever their size."""

    def __init__(self, model, max_batch: int, fail_first: int = 0):
        self._model = model
        self.max_batch = max_batch
        self.fail_first = fail_first
        self.calls = 0
        self.failures = 0
        self._lock = threading.Lock()

    def encode(self, features, *args, **kwargs):
        with self._lock:
            self.calls += 1
            fail = features.shape[0] > self.max_batch or self.calls <= self.fail_first
            self.failures += fail
        if fail:
            raise RuntimeError("CUDA failed with error out of memory")
        return self._model.encode(features, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


# (replicas, model calls that fail, executor OOM retries, ceiling after, batch sizes as run)
# One replica: encode fails above 2 windows a call: 6 fails -> 3 + 3; 3 fails -> 2 + 1; the
# second 3 is pre-split under the ceiling of 2.
# Two replicas: every window is its own call; the first call fails (memory taken by the other
# replica's window), so the batch of 6 fails -> 3 + 3, which then run.
RECOVERY = [(1, 2, 2, 2, [2, 1, 2, 1]), (2, 1, 1, 3, [3, 3])]


@pytest.mark.slow  # a real model end to end
@pytest.mark.parametrize("replicas, failures, retries, ceiling, sizes", RECOVERY)
def test_real_backend_recovers_from_injected_oom_with_the_same_text(data_dir, replicas, failures, retries, ceiling,
                                                                    sizes):
    model = resolve_model("whisper-tiny.en")
    backend = WhisperBackend(model.path, model.name, ModelOptions(name=model.name, device="cpu", threads=2,
                                                                  replicas=replicas), DecodeOptions())
    from tingxie.audio.decode import decode_audio

    audio = decode_audio(str(data_dir / "jfk.flac"))
    windows = [AudioSegment(i, 11.0 * i, 11.0 * (i + 1), audio) for i in range(6)]
    expected = backend.transcribe_batch(windows[:1])[0].pieces

    original = backend._model
    failing = FailingModel(original, max_batch=2, fail_first=1 if replicas > 1 else 0)
    backend._model = failing
    try:
        executor = Executor(backend)
        results = executor.run(windows)
    finally:
        backend._model = original

    assert [r.index for r in results] == list(range(6))  # none lost, none doubled, in order
    assert (failing.failures, executor.oom_retries, executor.ceiling) == (failures, retries, ceiling)
    assert executor.batch_sizes == sizes
    for result, window in zip(results, windows):
        assert [p.text for p in result.pieces] == [p.text for p in expected]
        assert result.pieces[0].start >= window.start


def test_unrelated_runtime_errors_are_not_taken_for_oom(tiny_transcriber):
    backend = tiny_transcriber.backend

    class Broken:
        def __getattr__(self, name):
            raise RuntimeError("some other failure")

    original = backend._model
    backend._model = Broken()
    try:
        import pytest

        with pytest.raises(RuntimeError, match="some other failure"):
            backend.transcribe_batch([AudioSegment(0, 0.0, 1.0, np.zeros(16000, np.float32))])
    finally:
        backend._model = original
