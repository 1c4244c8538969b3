"""The smaller points of issue 20: a WAV whose header claims far more than it holds is reported
truncated (CLI and server), a resumed run's figures cover the whole run, and an output that
cannot be written is said in plain words."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import httpx
import pytest

from long_audio import english_pieces, joined, write_flac
from test_server_helpers import SlowFakeBackend, fake_transcriber, server
from tingxie.audio.decode import decode_audio, probe_duration
from tingxie.cli.main import main
from tingxie.cli.transcribe import transcribe_one
from tingxie.engine.checkpoint import checkpoint_path
from tingxie.errors import AudioDecodeError

TINY = ["-m", "whisper-tiny.en", "-q"]
CLAIMED_S = 37 * 3600


def lying_wav(path: Path, claimed_s: float = CLAIMED_S, held_bytes: int = 1024) -> Path:
    """16 kHz mono 16-bit WAV whose data chunk claims claimed_s seconds but holds held_bytes."""
    data_size = int(claimed_s * 16000 * 2)
    header = b"RIFF" + struct.pack("<I", 36 + data_size) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
    header += b"data" + struct.pack("<I", data_size)
    path.write_bytes(header + bytes(held_bytes))
    return path


def test_a_wav_claiming_37_hours_but_holding_1_kb_is_truncated(tmp_path):
    path = lying_wav(tmp_path / "long.wav")
    assert probe_duration(str(path)) == pytest.approx(CLAIMED_S)
    with pytest.raises(AudioDecodeError, match=r"truncated: header says 133200.0 s, decoded 0.0 s"):
        decode_audio(str(path))
    for placeholder in (0xFFFFFFFF, 0x7FFFF000):  # streaming writers' "length unknown": decoded as it comes
        stream = tmp_path / f"stream-{placeholder:x}.wav"
        stream.write_bytes(lying_wav(tmp_path / "x.wav").read_bytes()[:40] + struct.pack("<I", placeholder)
                           + bytes(32000))
        assert len(decode_audio(str(stream))) == 16000


@pytest.mark.slow  # a real model end to end
def test_the_cli_reports_the_lying_wav_truncated_and_exits_non_zero(tmp_path, capsys):
    path = lying_wav(tmp_path / "long.wav")
    code = main(["transcribe", str(path), "-o", str(tmp_path / "out"), *TINY])
    err = capsys.readouterr().err
    assert code == 1 and "long.wav: truncated: header says 133200.0 s" in err


def test_the_server_answers_the_lying_wav_with_a_400(tmp_path):
    content = lying_wav(tmp_path / "long.wav").read_bytes()
    with server(fake_transcriber(), tmp_path) as (url, _), httpx.Client(base_url=url, timeout=30) as client:
        response = client.post("/v1/audio/transcriptions", files={"file": ("long.wav", content)})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_audio" and "truncated" in error["message"]
        assert str(tmp_path) not in error["message"]


class FailingAfter(SlowFakeBackend):
    """Fails (as a kill would stop it) after `limit` batches."""

    def __init__(self, delay_s: float, limit: int | None):
        super().__init__(delay_s)
        self.limit = limit

    def transcribe_batch(self, batch):
        if self.limit is not None and len(self.batches) >= self.limit:
            raise KeyboardInterrupt  # not caught as a backend failure: the run stops here
        return super().transcribe_batch(batch)


def small_window_transcriber(backend):
    from tingxie.engine.pipeline import Transcriber
    from tingxie.options import BatchOptions, TranscribeOptions
    from tingxie.planner.shapes import InputShape, ShapeRule

    backend.shape = InputShape(ShapeRule.FIXED_WINDOW, 5.0)
    transcriber = Transcriber(TranscribeOptions(batch=BatchOptions(max_batch_size=1)), backend=backend)
    transcriber.vad_options = transcriber.vad_options.__class__(
        **{**transcriber.vad_options.__dict__, "max_segment_s": 5.0, "merge_max_s": 5.0})
    return transcriber


def test_a_resumed_runs_json_stats_cover_the_interrupted_part_too(tmp_path):
    audio = write_flac(tmp_path / "talk.flac", joined(english_pieces(), seed=1))
    out = tmp_path / "out"
    first = small_window_transcriber(FailingAfter(0.1, limit=8))
    with pytest.raises(KeyboardInterrupt):
        transcribe_one(first, str(audio), ("json",), out)
    lines = checkpoint_path(str(audio), out).read_text().splitlines()
    earlier_wall_s = max(json.loads(line)["wall_s"] for line in lines[1:])
    assert earlier_wall_s >= 0.6  # at least 7 recorded windows of 0.1 s each

    second = small_window_transcriber(FailingAfter(0.1, limit=None))
    started = time.perf_counter()
    transcribe_one(second, str(audio), ("json",), out)
    this_run_s = time.perf_counter() - started
    stats = json.loads((out / "talk.json").read_text())["stats"]
    assert stats["wall_time_s"] >= earlier_wall_s + 0.9 * (len(second.backend.batches) * 0.1)
    assert stats["wall_time_s"] <= earlier_wall_s + this_run_s + 0.01
    assert stats["audio_duration_s"] == pytest.approx(132.7, abs=1)
    assert stats["speed"] == pytest.approx(stats["audio_duration_s"] / stats["wall_time_s"], rel=1e-2)


@pytest.mark.slow  # a real model end to end
def test_an_output_folder_that_is_a_file_is_said_in_plain_words(tmp_path, capsys, data_dir):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    code = main(["transcribe", str(data_dir / "jfk.flac"), "-o", str(blocker), *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "is a file, not a folder" in err and "unexpected" not in err and "--debug" not in err
    below = blocker / "out"  # a folder below a file: the error names the path it could not write
    code = main(["transcribe", str(data_dir / "jfk.flac"), "-o", str(below), *TINY])
    err = capsys.readouterr().err
    assert code == 1 and "cannot write" in err and "Not a directory" in err and "unexpected" not in err
