"""`tingxie transcribe` as a user runs it: outputs, several inputs, and every kind of bad input."""

import json
import shutil
import subprocess
import sys

import pytest
import srt
import webvtt

from tingxie.cli.main import main
from tingxie.benchmark.evaluation import normalize_english

TINY = ["-m", "whisper-tiny.en", "-q"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "tingxie.cli.main", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def jfk_outputs(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("out")
    result = run_cli("transcribe", str(data_dir / "jfk.flac"), "-o", str(out), *TINY)
    assert result.returncode == 0, result.stderr
    return out, result


@pytest.mark.slow  # a real model end to end
def test_all_four_formats_are_written_and_parse(jfk_outputs, data_dir):
    out, result = jfk_outputs
    reference = normalize_english((data_dir / "jfk.txt").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["jfk.json", "jfk.srt", "jfk.txt", "jfk.vtt"]
    assert normalize_english(result.stdout) == reference

    cues = list(srt.parse((out / "jfk.srt").read_text()))
    assert cues and normalize_english(" ".join(c.content for c in cues)) == reference
    assert all(c.start < c.end for c in cues) and cues[-1].end.total_seconds() <= 11.1

    vtt_cues = webvtt.read(str(out / "jfk.vtt"))
    assert normalize_english(" ".join(c.text for c in vtt_cues)) == reference

    document = json.loads((out / "jfk.json").read_text())
    assert document["model"] == "whisper-tiny.en" and document["language"] == "en"
    assert normalize_english(document["text"]) == reference
    assert [(s["start"], s["end"]) for s in document["segments"]] == [
        (round(c.start.total_seconds(), 3), round(c.end.total_seconds(), 3)) for c in cues]
    stats = document["stats"]
    assert stats["audio_duration_s"] == pytest.approx(11.0, abs=0.1)
    assert stats["speed"] == pytest.approx(stats["audio_duration_s"] / stats["wall_time_s"], rel=0.01)
    assert stats["peak_rss_bytes"] > 50 * 2**20 and stats["batches"] >= 1 and stats["oom_retries"] == 0
    assert 0.0 <= stats["padding_waste"] < 1.0


def _assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("tingxie: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def _bad_inputs(data_dir, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp3"
    text.write_text("this is not audio\n" * 50)
    truncated = tmp_path / "cut.flac"
    whole = (data_dir / "jfk.flac").read_bytes()
    truncated.write_bytes(whole[: len(whole) * 2 // 5])
    corrupt = tmp_path / "noise.flac"
    corrupt.write_bytes(whole[:8192] + bytes(range(256)) * 400)
    return {
        "missing": (tmp_path / "missing.wav", "no such file"),
        "empty": (empty, "empty"),
        "not audio": (text, "not an audio file"),
        "truncated": (truncated, "truncated"),
        "corrupt": (corrupt, ""),
    }


@pytest.mark.parametrize("case", ["missing"] + [  # a missing input is found before any model loads
    pytest.param(case, marks=pytest.mark.slow) for case in ("empty", "not audio", "truncated", "corrupt")])
def test_bad_input_gets_one_line_error_and_no_output(case, data_dir, tmp_path):
    path, reason = _bad_inputs(data_dir, tmp_path)[case]
    out = tmp_path / "out"
    result = run_cli("transcribe", str(path), "-o", str(out), *TINY)
    _assert_one_line_error(result, path.name, reason)
    line = next(line for line in result.stderr.splitlines() if "tingxie: error:" in line)
    assert line.count(path.name) == 1, line  # the input named once, not "a.wav: a.wav: ..."
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow  # a real model end to end
def test_one_bad_input_does_not_stop_the_others(data_dir, tmp_path, capsys):
    bad = _bad_inputs(data_dir, tmp_path)
    out = tmp_path / "out"
    good = tmp_path / "good.flac"
    shutil.copyfile(data_dir / "jfk.flac", good)
    inputs = [str(bad["missing"][0]), str(good), str(bad["truncated"][0])]
    code = main(["transcribe", *inputs, "-o", str(out), "-f", "txt,json", *TINY])
    captured = capsys.readouterr()
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["good.json", "good.txt"]
    assert captured.err.count("tingxie: error:") == 2
    assert "missing.wav" in captured.err and "cut.flac" in captured.err


@pytest.mark.parametrize("args, fragment", [
    (["--beam-size", "0"], "--beam-size"),
    (["--format", "docx"], "--format"),
    (["--batch-size-s", "lots"], "--batch-size-s"),
    (["--device", "tpu"], "--device"),
    (["--language", "english!"], "--language"),
    (["--model", "no-such-model"], "no-such-model"),
    (["--compute-type", "int4"], "--compute-type"),
])
def test_a_wrong_option_value_is_a_clear_error(args, fragment, data_dir, tmp_path):
    out = tmp_path / "out"
    result = run_cli("transcribe", str(data_dir / "jfk.flac"), "-o", str(out), "-q", *args)
    _assert_one_line_error(result, fragment)
    assert not out.exists()


@pytest.mark.slow  # a real model end to end
def test_an_existing_output_survives_a_failed_run(data_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "cut.txt").write_text("earlier result\n")
    truncated = _bad_inputs(data_dir, tmp_path)["truncated"][0]
    result = run_cli("transcribe", str(truncated), "-o", str(out), *TINY)
    assert result.returncode != 0
    assert (out / "cut.txt").read_text() == "earlier result\n"


def test_models_lists_the_embedded_models():
    result = run_cli("models")
    assert result.returncode == 0
    assert "whisper-base" in result.stdout and "whisper-tiny.en" in result.stdout


@pytest.mark.slow  # a real model end to end
def test_txt_alone_skips_the_word_alignment_and_keeps_the_text(jfk_outputs, data_dir, tmp_path, monkeypatch):
    """Word times are only shown by srt/vtt/json: a txt-only run does not pay for the align pass,
    except to find where the text of a window read slowly ends (guards.reads_slowly: its text may
    have stopped early)."""
    from tingxie.backends.whisper import backend as whisper

    calls = []
    real_align = whisper.align
    monkeypatch.setattr(whisper, "align", lambda *a, **k: calls.append(1) or real_align(*a, **k))
    fast = tmp_path / "fast"  # 29 words in 9.7 s: read at 3 words a second
    assert main(["transcribe", str(data_dir / "ljspeech" / "LJ001-0001.flac"), "-o", str(fast), "-f", "txt",
                 *TINY]) == 0
    assert calls == []
    txt_only = tmp_path / "txt"  # 22 words in 11 s: its one window is aligned once, to find its text's end
    assert main(["transcribe", str(data_dir / "jfk.flac"), "-o", str(txt_only), "-f", "txt", *TINY]) == 0
    assert len(calls) == 1
    assert [p.name for p in txt_only.iterdir()] == ["jfk.txt"]
    out, _ = jfk_outputs  # the run with every format, which aligned words
    assert normalize_english((txt_only / "jfk.txt").read_text()) == normalize_english((out / "jfk.txt").read_text())

    timed = tmp_path / "srt"
    assert main(["transcribe", str(data_dir / "jfk.flac"), "-o", str(timed), "-f", "srt", *TINY]) == 0
    assert len(calls) > 1, "srt needs word times: the align pass must run"


SHARED_GROUPS = ("model", "decoding", "batching and memory", "speech detection", "speakers")


def _flags(parser, groups=SHARED_GROUPS):
    return {group.title: sorted(flag for action in group._group_actions for flag in action.option_strings)
            for group in parser._action_groups if group.title in groups}


def _subparser(name):
    from tingxie.cli.main import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    return commands.choices[name]


def test_every_command_offers_the_same_model_decode_batch_and_vad_options():
    """One builder (cli/arguments.py): serve and ui take every flag transcribe takes, with one help text."""
    transcribe, serve, ui, bench = (_subparser(name) for name in ("transcribe", "serve", "ui", "bench"))
    flags = _flags(transcribe)
    assert set(flags) == set(SHARED_GROUPS)
    assert {"--model", "--engine", "--vad-model", "--punc-model", "--replicas"} <= set(flags["model"])
    assert {"--batch-size-s", "--memory-budget", "--max-batch-size"} <= set(flags["batching and memory"])
    assert _flags(serve) == flags and _flags(ui) == flags
    def helps(parser):
        return {a.option_strings[0]: a.help for g in parser._action_groups if g.title in SHARED_GROUPS
                for a in g._group_actions}

    assert helps(serve) == helps(transcribe)
    # bench sweeps the batch size and the budget itself; the rest is the same
    bench_flags = _flags(bench)
    assert bench_flags["model"] == flags["model"] and bench_flags["decoding"] == flags["decoding"]
    assert bench_flags["speech detection"] == flags["speech detection"]


def test_serve_builds_the_same_options_as_transcribe():
    from tingxie.cli.arguments import options_from_args
    from tingxie.cli.main import build_parser

    common = ["-m", "whisper-tiny.en", "--replicas", "1", "--vad-threshold", "0.6", "--max-segment", "20",
              "--memory-budget", "1GiB", "--batch-size-s", "60", "--beam-size", "2", "--engine", "torch"]
    parser = build_parser()
    served = options_from_args(parser.parse_args(["serve", *common]))
    transcribed = options_from_args(parser.parse_args(["transcribe", "x.wav", *common]))
    assert served == transcribed
    assert served.model.replicas == 1 and served.vad.threshold == 0.6 and served.batch.batch_size_s == 60
