"""Batching changes speed and memory, never the transcript, and a budget is a real ceiling."""

import json
import subprocess
import sys

import pytest

from long_audio import DATA, english_pieces, joined, write_flac
from tingxie.benchmark.evaluation import normalize_english, word_error_rate
from tingxie.options import BatchOptions, TranscribeOptions
from tingxie.engine.pipeline import Transcriber
from tingxie.memory.resources import watch_peak_rss

pytestmark = pytest.mark.slow  # every test here runs a real model on minutes of audio


@pytest.fixture(scope="module")
def long_input(tmp_path_factory):
    return write_flac(tmp_path_factory.mktemp("batching") / "long_en.flac", joined(english_pieces(), seed=2))


def _reference() -> str:
    lines = dict(line.rstrip("\n").split("\t") for line in (DATA / "ljspeech/references.tsv").open())
    return " ".join([lines[k] for k in sorted(lines)] + [(DATA / "jfk.txt").read_text()])


def _per_segment(transcriber, path):
    texts = {}

    def collect(window):
        for result in window.results:
            texts[result.index] = " ".join(p.text for p in result.pieces)

    transcript = transcriber.transcribe(str(path), on_window=collect)
    return texts, transcript


def test_auto_batches_give_the_transcript_of_one_segment_at_a_time(long_input, tiny_transcriber):
    one_at_a_time = Transcriber(
        TranscribeOptions(model=tiny_transcriber.options.model, batch=BatchOptions(max_batch_size=1)),
        backend=tiny_transcriber.backend, memory=tiny_transcriber.memory)
    batched, batched_transcript = _per_segment(tiny_transcriber, long_input)
    single, single_transcript = _per_segment(one_at_a_time, long_input)
    assert batched_transcript.stats.batches < single_transcript.stats.batches == len(single)
    assert batched.keys() == single.keys()
    same = sum(batched[i] == single[i] for i in single) / len(single)
    reference = normalize_english(_reference())
    wer_batched = word_error_rate([reference], [normalize_english(batched_transcript.text)])
    wer_single = word_error_rate([reference], [normalize_english(single_transcript.text)])
    print(f"\nidentical segments {same:.0%}; WER batched {wer_batched:.2%}, one at a time {wer_single:.2%}")
    assert same >= 0.95
    assert abs(wer_batched - wer_single) <= 0.005


def _run_measured(path, out, *extra):
    """Run the CLI in a child and take its peak RSS from outside (its VmHWM, polled: wait4's
    ru_maxrss would report this large test process's size, carried across exec)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tingxie.cli.main", "transcribe", str(path), "-o", str(out), "-q", "-f", "json",
         "-m", "whisper-tiny.en", *extra], stdout=subprocess.DEVNULL)
    return watch_peak_rss(process)


@pytest.fixture(scope="module")
def longer_input(tmp_path_factory):
    """About 4.5 minutes: enough 30 s windows that the unconstrained run batches 10 or more."""
    return write_flac(tmp_path_factory.mktemp("budget") / "long_en.flac",
                      joined(english_pieces() + english_pieces(), seed=3))


def test_a_budget_of_half_the_unconstrained_peak_is_kept(longer_input, tmp_path):
    long_input = longer_input
    # One replica, so a batch is one call and memory grows with the batch (with replicas side
    # by side on a CPU each window is its own call and the peak hardly depends on the batch).
    batch = ("--max-batch-size", "16", "--replicas", "1")
    code, unconstrained_peak = _run_measured(long_input, tmp_path / "free", *batch)
    assert code == 0
    budget = unconstrained_peak // 2
    code, peak = _run_measured(long_input, tmp_path / "half", "--memory-budget", str(budget), *batch)
    stats = json.loads((tmp_path / "half/long_en.json").read_text())["stats"]
    free_stats = json.loads((tmp_path / "free/long_en.json").read_text())["stats"]
    print(f"\nunconstrained peak {unconstrained_peak / 2**20:.0f} MiB in {free_stats['batches']} batches; "
          f"budget {budget / 2**20:.0f} MiB: peak {peak / 2**20:.0f} MiB in {stats['batches']} batches")
    assert code == 0
    assert peak < budget
    assert stats["segments"] == free_stats["segments"] and stats["batches"] > free_stats["batches"]
