"""The benchmark runner's figures for one real child run (whisper-tiny.en on an 11 s clip)."""

from __future__ import annotations

from tingxie.benchmark.runner import run_once
from tingxie.benchmark.spec import CaseSpec


def test_a_run_records_the_transcription_cpu_apart_from_the_whole_child(data_dir):
    # a fixed batch_size_s: no memory profile to measure first
    record = run_once(CaseSpec(name="tiny", kind="tingxie", audio=str(data_dir / "jfk.flac"), threads=1,
                               batch_size_s=30))
    assert record.audio_s > 10 and "country" in record.text.lower()
    # the transcription did work, and only it: the child's own CPU seconds also hold the imports
    # and the model's load, which the run's figure must leave out (as wall_s leaves out load_s)
    assert 0 < record.run_cpu_s < record.cpu_s
    assert record.cpu_s - record.run_cpu_s > 0.2  # at least the imports and the load
