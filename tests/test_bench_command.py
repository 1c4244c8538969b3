"""`tingxie bench` end to end on short clips: the rows it runs, its three outputs, its errors."""

from __future__ import annotations

import json
import statistics

import pytest

from tingxie.cli.main import main

pytest_plugins = ["conftest_paraformer"]


def bench(capsys, *args) -> tuple[int, str, str]:
    code = main(["bench", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("tingxie bench: run")]
    assert len(lines) == 1, err
    assert lines[0].startswith("tingxie: error: ")
    return lines[0]


@pytest.mark.parametrize("args, message", [
    (["-m", "whisper-huge-v9"], "unknown model 'whisper-huge-v9'"),
    (["--batch-size-s", "-60"], "--batch-size-s values must be at least 1 second, not -60"),
    (["--batch-size-s", "60,abc"], "--batch-size-s takes numbers"),
    (["--budget=-1GiB"], "budget"),
    (["--budget", "120%"], "budget"),
    (["--runs", "0"], "--runs must be between 1 and 100"),
    (["--baseline", "whisperx:4"], "--baseline takes fw-batched or funasr"),
    (["--baseline", "fw-batched:-4"], "fw-batched batch sizes must be whole numbers"),
    (["--baseline", "funasr"], "--baseline funasr needs a FunASR Paraformer model directory"),
])
def test_bad_options_are_one_line_errors_with_exit_2(capsys, data_dir, tmp_path, args, message):
    code, out, err = bench(capsys, data_dir / "jfk.flac", "-o", tmp_path / "b", *args)
    assert code == 2
    assert message in one_line_error(err)
    assert not list(tmp_path.iterdir())  # nothing was run or written


def test_missing_audio_is_a_one_line_error(capsys, tmp_path):
    code, _, err = bench(capsys, tmp_path / "nothing.flac", "-o", tmp_path / "b")
    assert code == 2 and "nothing.flac: no such file" in one_line_error(err)


@pytest.mark.slow  # a real model end to end
def test_a_budget_below_the_smallest_batch_is_a_one_line_error(capsys, data_dir, tmp_path):
    code, _, err = bench(capsys, data_dir / "jfk.flac", "-o", tmp_path / "b", "--batch-size-s", "none",
                         "--budget", "40MiB", "--runs", "1")  # above the weights (36 MiB as int8)
    assert code == 2
    line = one_line_error(err)
    assert "auto, budget 40MiB: --memory-budget 40MiB (40.0 MiB) is below the smallest batch: " in line
    assert "the smallest budget that works is " in line
    assert not (tmp_path / "b.json").exists()


@pytest.mark.slow  # a real model end to end
def test_sweep_writes_json_markdown_and_png_with_one_row_per_config(capsys, data_dir, tmp_path):
    out = tmp_path / "results" / "jfk"
    code, table, err = bench(capsys, data_dir / "jfk.flac", "-o", out, "--runs", "2", "--batch-size-s", "30,60",
                             "--budget", "2GiB", "--baseline", "fw-batched:2", "--reference", data_dir / "jfk.txt")
    assert code == 0, err
    doc = json.loads(out.with_name("jfk.json").read_text())
    assert doc["command"].startswith("tingxie bench ") and "--budget 2GiB" in doc["command"]
    assert doc["model"] == "whisper-tiny.en" and doc["runs"] == 2
    assert doc["audio_s"] == pytest.approx(11.0, abs=0.1) and doc["device"].startswith("cpu")
    rows = {row["name"]: row for row in doc["rows"]}
    assert list(rows) == ["batch_size_s=30", "batch_size_s=60", "auto, budget 2GiB", "fw-batched 2"]
    assert [rows[n]["kind"] for n in rows] == ["tingxie", "tingxie", "tingxie", "fw-batched"]
    assert [rows[n]["batch_size_s"] for n in rows] == [30, 60, None, None]
    auto = rows["auto, budget 2GiB"]
    assert auto["budget_bytes"] == 2 * 1024**3
    assert auto["under_budget"] == (max(auto["runs_peak_rss_bytes"]) <= 2 * 1024**3)
    for row in doc["rows"]:
        assert len(row["runs_wall_s"]) == 2
        assert row["wall_s"] == pytest.approx(statistics.median(row["runs_wall_s"]))
        assert row["speed"] == pytest.approx(doc["audio_s"] / row["wall_s"])
        assert 100 * 2**20 < row["peak_rss_bytes"] < 4 * 2**30
        assert row["wer"] is not None and row["wer"] < 0.2  # jfk.flac is easy for tiny.en
    wastes = set()
    for name in ("batch_size_s=30", "batch_size_s=60", "auto, budget 2GiB"):
        # at most 11 s of speech in one 30 s window, whatever the batching
        assert rows[name]["batches"] == 1 and rows[name]["oom_retries"] == 0
        assert 1 - 11.0 / 30 - 1e-9 <= rows[name]["padding_waste"] <= 1 - 9.0 / 30
        wastes.add(rows[name]["padding_waste"])
    assert len(wastes) == 1  # the same window in every row
    fw = rows["fw-batched 2"]
    assert fw["batches"] is None and fw["padding_waste"] is None and fw["budget_bytes"] is None

    md = out.with_name("jfk.md").read_text()
    assert md in table  # the printed table is the saved one
    assert sum(line.startswith("| `") for line in md.splitlines()) == 4
    assert out.with_name("jfk.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_funasr_baseline_on_a_paraformer_directory(capsys, paraformer_dir, offline, data_dir, tmp_path):
    out = tmp_path / "para"
    code, _, err = bench(capsys, data_dir / "asr_example.wav", "-m", paraformer_dir, "--compute-type", "float32",
                         "--threads", "1", "-o", out, "--runs", "1", "--batch-size-s", "60", "--budget", "none",
                         "--baseline", "funasr:60")
    assert code == 0, err
    doc = json.loads(out.with_name("para.json").read_text())
    rows = {row["name"]: row for row in doc["rows"]}
    assert list(rows) == ["batch_size_s=60", "funasr batch_size_s=60"]
    funasr = rows["funasr batch_size_s=60"]
    assert funasr["kind"] == "funasr" and funasr["batch_size_s"] == 60
    # on CPU FunASR runs every segment alone: as many batches as segments, and no padding
    assert funasr["batches"] >= 1 and funasr["padding_waste"] == 0.0
    assert rows["batch_size_s=60"]["batches"] >= 1 and rows["batch_size_s=60"]["padding_waste"] >= 0.0
    assert out.with_name("para.png").is_file()
