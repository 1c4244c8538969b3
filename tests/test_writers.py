"""Output writers: each format parsed back with an independent parser, atomic writes, paths."""

from __future__ import annotations

import io
import json
import os
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
import srt as srt_parser
import webvtt

from tingxie import writers
from tingxie.errors import OptionError
from tingxie.segments import RunStats, TextSegment, Transcript
from tingxie.writers import atomic, srt, vtt


def _transcript() -> Transcript:
    segments = [
        TextSegment(-0.2, 1.5, " And so, my fellow Americans "),
        TextSegment(1.5, 3.0, "   "),  # nothing recognised: no cue, no line
        TextSegment(3.0, 59.9996, "你好，世界。"),
        TextSegment(59.9996, 61.25, "欢迎"),
        TextSegment(3725.0014, 3724.0, "past an hour, end before start"),
    ]
    stats = RunStats(
        audio_seconds=3725.5, wall_seconds=12.5, peak_rss_bytes=123456789,
        batches=7, segments=5, oom_retries=1, padding_waste=0.123456,
    )
    return Transcript(source="x/jfk.flac", model="base", language="en", segments=segments, stats=stats)


# (start, end, text) expected for the cues, i.e. the segments with text.
CUES = [
    (timedelta(0), timedelta(seconds=1, milliseconds=500), "And so, my fellow Americans"),
    (timedelta(seconds=3), timedelta(minutes=1), "你好，世界。"),
    (timedelta(minutes=1), timedelta(seconds=61, milliseconds=250), "欢迎"),
    (timedelta(hours=1, seconds=125, milliseconds=1), timedelta(hours=1, seconds=125, milliseconds=1),
     "past an hour, end before start"),
]


def test_srt_parses_back():
    text = writers.render(_transcript(), "srt")
    subs = list(srt_parser.parse(text))
    assert [(s.start, s.end, s.content) for s in subs] == CUES
    assert [s.index for s in subs] == [1, 2, 3, 4]
    assert "00:00:59,999" not in text and "00:01:00,000 --> 00:01:01,250" in text
    assert "01:02:05,001 --> 01:02:05,001" in text


def test_vtt_parses_back():
    text = writers.render(_transcript(), "vtt")
    assert text.startswith("WEBVTT\n\n")
    cues = list(webvtt.from_buffer(io.StringIO(text)))
    got = [(c.start, c.end, c.text) for c in cues]
    assert got == [
        ("00:00:00.000", "00:00:01.500", "And so, my fellow Americans"),
        ("00:00:03.000", "00:01:00.000", "你好，世界。"),
        ("00:01:00.000", "00:01:01.250", "欢迎"),
        ("01:02:05.001", "01:02:05.001", "past an hour, end before start"),
    ]


def test_json_fields():
    data = json.loads(writers.render(_transcript(), "json"))
    assert data["source"] == "x/jfk.flac"
    assert data["model"] == "base"
    assert data["language"] == "en"
    assert data["text"] == "And so, my fellow Americans 你好，世界。欢迎 past an hour, end before start"
    assert data["segments"] == [
        {"id": 0, "start": 0.0, "end": 1.5, "text": "And so, my fellow Americans"},
        {"id": 1, "start": 1.5, "end": 3.0, "text": ""},
        {"id": 2, "start": 3.0, "end": 60.0, "text": "你好，世界。"},
        {"id": 3, "start": 60.0, "end": 61.25, "text": "欢迎"},
        {"id": 4, "start": 3725.001, "end": 3725.001, "text": "past an hour, end before start"},
    ]
    assert data["stats"] == {
        "audio_duration_s": 3725.5,
        "wall_time_s": 12.5,
        "speed": 298.04,
        "peak_rss_bytes": 123456789,
        "batches": 7,
        "segments": 5,
        "oom_retries": 1,
        "padding_waste": 0.1235,
        "budget_shrinks": 0,
        "lowest_batch_memory_bytes": None,
    }


def test_json_keeps_cjk_unescaped_and_null_language():
    t = Transcript(source="-", model="m", language=None, segments=[TextSegment(0, 1, "中文")])
    text = writers.render(t, "json")
    assert "中文" in text and "\\u" not in text
    data = json.loads(text)
    assert data["language"] is None
    assert data["stats"]["speed"] == 0.0  # no wall time: no division by zero


def test_txt_exact():
    assert writers.render(_transcript(), "txt") == (
        "And so, my fellow Americans\n你好，世界。\n欢迎\npast an hour, end before start\n"
    )


def test_empty_transcript():
    t = Transcript(source="a.wav", model="m", language=None)
    assert writers.render(t, "txt") == ""
    assert writers.render(t, "srt") == ""
    assert writers.render(t, "vtt") == "WEBVTT\n\n"
    assert json.loads(writers.render(t, "json"))["segments"] == []


def test_multiline_text_stays_one_cue():
    t = Transcript(source="a", model="m", language=None,
                   segments=[TextSegment(0, 1, "one\n\ntwo"), TextSegment(1, 2, "three")])
    assert [s.content for s in srt_parser.parse(writers.render(t, "srt"))] == ["one two", "three"]
    assert [c.text for c in webvtt.from_buffer(io.StringIO(writers.render(t, "vtt")))] == ["one two", "three"]
    assert writers.render(t, "txt") == "one two\nthree\n"


def test_vtt_escapes_markup():
    cue = vtt.format_cue(TextSegment(0, 1, "a < b & c --> d"))
    assert cue == "00:00:00.000 --> 00:00:01.000\na &lt; b &amp; c --&gt; d\n\n"


@pytest.mark.parametrize(
    ("seconds", "stamp"),
    [
        (0.0, "00:00:00,000"),
        (-5.0, "00:00:00,000"),
        (float("nan"), "00:00:00,000"),
        (0.0005, "00:00:00,001"),
        (0.0004999, "00:00:00,000"),
        (1.001, "00:00:01,001"),
        (59.9996, "00:01:00,000"),
        (3599.9995, "01:00:00,000"),
        (100 * 3600 + 61.5, "100:01:01,500"),
    ],
)
def test_srt_timestamps(seconds, stamp):
    cue = srt.format_cue(3, TextSegment(seconds, seconds, "x"))
    assert cue == f"3\n{stamp} --> {stamp}\nx\n\n"


def test_long_hours_parse_back():
    t = Transcript(source="a", model="m", language=None, segments=[TextSegment(360000.5, 360001.0, "late")])
    (sub,) = srt_parser.parse(writers.render(t, "srt"))
    assert (sub.start, sub.end) == (timedelta(hours=100, milliseconds=500), timedelta(hours=100, seconds=1))
    (cue,) = webvtt.from_buffer(io.StringIO(writers.render(t, "vtt")))
    assert (cue.start, cue.end) == ("100:00:00.500", "100:00:01.000")


def test_whole_file_render_is_made_of_cues():
    t = _transcript()
    with_text = [s for s in t.segments if s.text.strip()]
    assert writers.render(t, "srt") == "".join(srt.format_cue(i, s) for i, s in enumerate(with_text, 1))
    assert writers.render(t, "vtt") == vtt.header() + "".join(vtt.format_cue(s) for s in with_text)


def test_unknown_format():
    with pytest.raises(OptionError):
        writers.render(_transcript(), "docx")
    with pytest.raises(OptionError):
        writers.output_path("a.wav", "out", "docx")


# --- writing to disk -------------------------------------------------------


@pytest.mark.parametrize("fmt", writers.FORMATS)
def test_write_transcript(tmp_path, fmt):
    target = tmp_path / "new" / "dir" / f"jfk.{fmt}"
    assert writers.write_transcript(_transcript(), target, fmt) == target
    assert target.read_text(encoding="utf-8") == writers.render(_transcript(), fmt)
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_written_file_mode_follows_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic.atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640


def _fail(*args, **kwargs):
    raise OSError("disk full")


@pytest.mark.parametrize("broken", ["replace", "fsync", "write"])
@pytest.mark.parametrize("existing", [None, "old content\n"])
def test_failed_write_leaves_nothing_partial(tmp_path, monkeypatch, broken, existing):
    target = tmp_path / "jfk.srt"
    if existing is not None:
        target.write_text(existing, encoding="utf-8")
    if broken == "write":
        # Fail after part of the text has gone to the temp file.
        real_named = tempfile.NamedTemporaryFile

        def half_writing_file(*args, **kwargs):
            tmp = real_named(*args, **kwargs)
            real_write = tmp.write

            def half_write(text):
                real_write(text[: len(text) // 2])
                tmp.flush()
                raise OSError("disk full")

            tmp.write = half_write
            return tmp

        monkeypatch.setattr(tempfile, "NamedTemporaryFile", half_writing_file)
    else:
        monkeypatch.setattr(os, broken, _fail)

    with pytest.raises(OSError, match="disk full"):
        writers.write_transcript(_transcript(), target, "srt")
    monkeypatch.undo()

    expected = [] if existing is None else [target.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == expected
    if existing is not None:
        assert target.read_text(encoding="utf-8") == existing


def test_interrupt_cleans_up(tmp_path, monkeypatch):
    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_write_text(tmp_path / "a.txt", "x")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_failed_render_does_not_touch_target(tmp_path, monkeypatch):
    target = tmp_path / "jfk.txt"
    target.write_text("old\n", encoding="utf-8")
    monkeypatch.setitem(writers._RENDERERS, "txt", _fail)
    with pytest.raises(OSError):
        writers.write_transcript(_transcript(), target, "txt")
    assert target.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["jfk.txt"]


# --- output paths ------------------------------------------------------------


@pytest.mark.parametrize(
    ("input_path", "output_dir", "fmt", "expected"),
    [
        ("x/jfk.flac", "out", "srt", Path("out/jfk.srt")),
        (Path("/data/talk.wav"), Path("/tmp/o"), "json", Path("/tmp/o/talk.json")),
        ("-", "out", "txt", Path("out/stdin.txt")),
        ("noext", ".", "vtt", Path("noext.vtt")),
        ("a/b.c.mp3", "out", "txt", Path("out/b.c.txt")),
        ("会议记录.m4a", "out", "srt", Path("out/会议记录.srt")),
    ],
)
def test_output_path(input_path, output_dir, fmt, expected):
    assert writers.output_path(input_path, output_dir, fmt) == expected
