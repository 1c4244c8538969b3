"""Streaming: the same segments and text whatever the chunking, and audio held stays bounded."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from long_audio import english_pieces, joined, write_flac
from tingxie.audio.decode import decode_audio
from tingxie.audio.buffer import RollingAudio
from tingxie.backends.fake import FakeBackend
from tingxie.engine.executor import Executor
from tingxie.engine.packing import pack_windows
from tingxie.options import BatchOptions, TranscribeOptions, VadOptions
from tingxie.engine.pipeline import Transcriber
from tingxie.segments import AudioSegment
from tingxie.planner.shapes import InputShape, ShapeRule
from tingxie.engine.streaming import StreamState, run_windows, speech_segments
from tingxie.vad.detector import SpeechDetector, SpeechProbabilities, SegmentTracker, detect_speech


@pytest.fixture(scope="module")
def long_english(tmp_path_factory):
    audio = joined(english_pieces())
    return write_flac(tmp_path_factory.mktemp("long") / "long_en.flac", audio), audio


def whole_array_segments(audio, options):
    return [AudioSegment(i, s.start, s.end, audio[int(s.start * 16000):int(s.end * 16000)])
            for i, s in enumerate(detect_speech(audio, options))]


def chunked(audio, sizes):
    start, i = 0, 0
    while start < len(audio):
        size = sizes[i % len(sizes)]
        yield audio[start:start + size]
        start, i = start + size, i + 1


@pytest.fixture(scope="module")
def bursts():
    """30 s of speech-like bursts and pauses from jfk, with long and short gaps."""
    jfk = decode_audio("tests/data/jfk.flac")
    parts = [jfk[:40000], np.zeros(3000, np.float32), jfk[40000:90000], np.zeros(40000, np.float32),
             jfk[90000:], np.zeros(16000 * 4, np.float32), jfk[:30000]]
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def bursts_probabilities(bursts):
    probs = SpeechProbabilities()
    return np.concatenate([probs.push(bursts), probs.flush()])


@pytest.mark.slow  # Silero over minutes of audio
@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 40000), min_size=1, max_size=5),
       max_segment=st.sampled_from([3.0, 8.0, 30.0]))
def test_segments_are_the_same_whatever_the_chunk_sizes(bursts, sizes, max_segment):
    options = VadOptions(max_segment_s=max_segment, merge_max_s=max_segment)
    expected = whole_array_segments(bursts, options)
    got = list(speech_segments(chunked(bursts, sizes), SpeechDetector(options), StreamState()))
    assert [(s.index, s.start, s.end) for s in got] == [(s.index, s.start, s.end) for s in expected]
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a.samples, b.samples)


@pytest.mark.slow  # Silero over minutes of audio
def test_audio_held_stays_bounded_on_a_long_stream(bursts):
    # 20 minutes of real speech bursts: what is held must not grow with the length.
    chunk = np.resize(bursts, 30 * 16000)

    def chunks():
        for _ in range(40):
            yield chunk

    state = StreamState()
    count = sum(1 for _ in speech_segments(chunks(), SpeechDetector(VadOptions()), state))
    assert state.audio_s == pytest.approx(1200.0)
    assert count >= 40
    assert state.peak_held_samples <= 16000 * 65  # an open span of up to 30 s plus a chunk, never the file


def test_rolling_audio_cuts_and_drops():
    buffer = RollingAudio()
    data = np.arange(16000 * 3, dtype=np.float32)
    for part in np.split(data, 6):
        buffer.append(part)
    np.testing.assert_array_equal(buffer.cut(0.5, 1.0), data[8000:16000])
    buffer.drop_before(1.25)
    assert buffer.held_samples == 16000 * 3 - 20000
    np.testing.assert_array_equal(buffer.cut(1.25, 3.0), data[20000:])
    with pytest.raises(ValueError):
        buffer.cut(1.0, 2.0)


def test_streamed_text_equals_whole_array_text_on_long_real_audio(long_english, tiny_transcriber):
    path, audio = long_english
    streamed = tiny_transcriber.transcribe(str(path))
    # The same recognition on segments from the whole array at once (no streaming).
    segments = whole_array_segments(decode_audio(str(path)), tiny_transcriber.vad_options)
    segments = list(pack_windows(segments, tiny_transcriber.backend.shape.max_item_s))
    executor = Executor(tiny_transcriber.backend)
    whole = [r for window in run_windows(iter(segments), tiny_transcriber.backend, executor,
                                         tiny_transcriber.options.batch,
                                         memory_model=tiny_transcriber.memory.model,
                                         working_budget=tiny_transcriber.memory.working_budget)
             for r in window.results]
    assert [p.text for r in whole for p in r.pieces] == [s.text for s in streamed.segments]
    assert streamed.stats.audio_seconds == pytest.approx(len(audio) / 16000, abs=0.05)
    assert streamed.stats.audio_seconds > 120


def test_windows_are_fixed_runs_of_segments_and_results_come_in_time_order(bursts):
    backend = FakeBackend(shape=InputShape(ShapeRule.VARIABLE, 30.0))
    options = BatchOptions(max_batch_size=2)
    segments = whole_array_segments(np.tile(bursts, 3), VadOptions(max_segment_s=3.0, merge_max_s=3.0))
    windows = list(run_windows(iter(segments), backend, Executor(backend), options))
    assert all(len(w.results) == 8 for w in windows[:-1])  # 4 x the batch capacity of 2
    indices = [r.index for w in windows for r in w.results]
    assert indices == list(range(len(segments)))


def test_recorded_windows_are_not_recomputed(bursts):
    backend = FakeBackend(shape=InputShape(ShapeRule.VARIABLE, 30.0))
    options = BatchOptions(max_batch_size=2)
    segments = whole_array_segments(np.tile(bursts, 3), VadOptions(max_segment_s=3.0, merge_max_s=3.0))
    first = list(run_windows(iter(segments), backend, Executor(backend), options))
    fresh = FakeBackend(shape=InputShape(ShapeRule.VARIABLE, 30.0))
    first_window = {r.index: r for r in first[0].results}
    again = list(run_windows(iter(segments), fresh, Executor(fresh), options, recorded=first_window.get))
    assert [r for w in again for r in w.results] == [r for w in first for r in w.results]
    assert not any(i in {r.index for r in first[0].results} for b in fresh.batches for i in b)


@pytest.mark.slow  # a real model end to end
def test_pipeline_reads_a_pipe_of_unknown_length(data_dir):
    backend = FakeBackend(shape=InputShape(ShapeRule.FIXED_WINDOW, 30.0))
    seen = []
    with open(data_dir / "jfk.flac", "rb") as handle:
        class Pipe:  # not seekable: like stdin
            name = "<stdin>"

            def read(self, size=-1):
                return handle.read(size)

            def seekable(self):
                return False

        transcript = Transcriber(TranscribeOptions(), backend=backend).transcribe(
            Pipe(), progress=lambda done, total: seen.append(total))
    assert transcript.segments and transcript.stats.audio_seconds == pytest.approx(11.0, abs=0.1)
    assert seen and all(total is None for total in seen[:-1])
