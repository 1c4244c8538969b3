"""Decoding: every common format to 16 kHz mono float32, chunking, file objects, bad inputs."""

from __future__ import annotations

import fractions
import io
import os
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from tingxie.audio.decode import decode_audio, decode_chunks, probe_duration
from tingxie.errors import AudioDecodeError

JFK = Path(__file__).parent / "data" / "jfk.flac"  # 11.0 s, 44.1 kHz


def _load(path: Path, rate: int) -> np.ndarray:
    """Reference decode at a chosen rate (mono), independent of tingxie.audio.decode."""
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        frames = [f for frame in container.decode(audio=0) for f in resampler.resample(frame)]
        frames += resampler.resample(None)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])


def _encode(path: Path, channels: np.ndarray, rate: int, codec: str, fmt: str | None = None,
            video: str | None = None, options: dict | None = None) -> Path:
    """Write (channels, samples) float audio with PyAV, optionally beside a black video track."""
    layout = "mono" if channels.shape[0] == 1 else "stereo"
    with av.open(str(path), "w", format=fmt, options=options or {}) as out:
        astream = out.add_stream(codec, rate=rate)
        astream.layout = layout
        if video:  # every stream must exist before the first packet is written
            vstream = out.add_stream(video, rate=10)
            vstream.width, vstream.height, vstream.pix_fmt = 64, 48, "yuv420p"
            for i in range(int(channels.shape[1] / rate * 10)):
                frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
                frame.pts = i
                out.mux(vstream.encode(frame))
            out.mux(vstream.encode(None))
        step = 1024
        for i in range(0, channels.shape[1], step):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(channels[:, i : i + step], np.float32), format="fltp", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = rate, i, fractions.Fraction(1, rate)
            out.mux(astream.encode(frame))
        out.mux(astream.encode(None))
    return path


def _envelope(x: np.ndarray, hop: int = 160) -> np.ndarray:
    n = len(x) // hop
    return np.sqrt((x[: n * hop].reshape(n, hop) ** 2).mean(axis=1))


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of 10 ms loudness envelopes, at the best shift within 100 ms (codec delays:
    an MP3 without a LAME header cannot tell the decoder its encoder delay)."""
    ea, eb = _envelope(a), _envelope(b)
    n = min(len(ea), len(eb)) - 20
    return max(np.corrcoef(ea[10 + k : 10 + k + n], eb[10 : 10 + n])[0, 1] for k in range(-10, 11))


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return decode_audio(JFK)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("formats")
    x16, x44, x48 = (_load(JFK, r)[None, :] for r in (16000, 44100, 48000))
    made = {
        "mp3": _encode(d / "jfk.mp3", x16, 16000, "libmp3lame"),
        "mp3_no_xing": _encode(d / "jfk_no_xing.mp3", x16, 16000, "libmp3lame", options={"write_xing": "0"}),
        "opus": _encode(d / "jfk.ogg", x48, 48000, "libopus", fmt="ogg"),
        "m4a": _encode(d / "jfk.m4a", x16, 16000, "aac", fmt="mp4"),
        "m4a_faststart": _encode(d / "jfk_fs.m4a", x16, 16000, "aac", fmt="mp4", options={"movflags": "faststart"}),
        "mp4_video": _encode(d / "jfk.mp4", x16, 16000, "aac", fmt="mp4", video="mpeg4"),
        "mkv_video": _encode(d / "jfk.mkv", x48, 48000, "libopus", fmt="matroska", video="mpeg4"),
        "wav_44k_stereo": _encode(d / "jfk44.wav", np.vstack([x44, x44 * 0.5]), 44100, "pcm_s16le", fmt="wav"),
        "wav_48k": _encode(d / "jfk48.wav", x48, 48000, "pcm_s16le", fmt="wav"),
        "flac": JFK,
    }
    return made


FORMATS = ["flac", "mp3", "mp3_no_xing", "opus", "m4a", "m4a_faststart", "mp4_video", "mkv_video",
           "wav_44k_stereo", "wav_48k"]


@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_decodes_to_16k_mono_float32(files, reference, kind):
    audio = decode_audio(files[kind])
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / 16000 - 11.0) < 0.1
    assert _similarity(audio, reference) > 0.95  # the same speech at (nearly) the same times
    assert 0.5 < np.sqrt(np.mean(audio**2)) / np.sqrt(np.mean(reference**2)) < 2.0
    assert abs(probe_duration(files[kind]) - 11.0) < 0.1


@pytest.mark.parametrize("chunk_s", [0.01, 1.0, 2.5, 30.0])
def test_chunks_concatenate_to_the_whole(files, chunk_s):
    whole = decode_audio(files["mp3"])
    chunks = list(decode_chunks(files["mp3"], chunk_s=chunk_s))
    size = round(chunk_s * 16000)
    assert all(len(c) == size for c in chunks[:-1]) and 0 < len(chunks[-1]) <= size
    np.testing.assert_array_equal(np.concatenate(chunks), whole)


def test_file_objects_decode_like_paths(files):
    whole = decode_audio(files["m4a_faststart"])
    with open(files["m4a_faststart"], "rb") as f:
        np.testing.assert_array_equal(decode_audio(f), whole)
        assert not f.closed
    data = files["m4a_faststart"].read_bytes()
    np.testing.assert_array_equal(decode_audio(io.BytesIO(data)), whole)
    buffer = io.BytesIO(data)
    assert abs(probe_duration(buffer) - 11.0) < 0.1 and buffer.tell() == 0  # left where it was
    np.testing.assert_array_equal(decode_audio(buffer), whole)


def _pipe(data: bytes):
    read_fd, write_fd = os.pipe()

    def write():
        with os.fdopen(write_fd, "wb") as w:
            w.write(data)

    threading.Thread(target=write, daemon=True).start()
    return os.fdopen(read_fd, "rb")


def test_a_pipe_decodes_and_has_no_declared_duration(files):
    whole = decode_audio(files["flac"])
    with _pipe(files["flac"].read_bytes()) as pipe:
        assert probe_duration(pipe) is None
        np.testing.assert_array_equal(decode_audio(pipe), whole)


def test_closing_the_generator_early_releases_the_file(files):
    fds = len(os.listdir("/proc/self/fd"))
    chunks = decode_chunks(files["wav_48k"], chunk_s=1.0)
    next(chunks)
    chunks.close()
    assert len(os.listdir("/proc/self/fd")) == fds


def _truncated(src: Path, dst: Path, fraction: float = 0.4) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


@pytest.fixture(scope="module")
def bad(files, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    (d / "empty.wav").write_bytes(b"")
    (d / "notes.txt").write_text("not audio at all\n" * 50)
    # A real 1x1 PNG.
    (d / "image.png").write_bytes(bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b55"
        "0000000a49444154789c63600000000200015e2e1c930000000049454e44ae426082"))
    # Valid FLAC headers, then random bytes where the frames should be.
    (d / "corrupt.flac").write_bytes(files["flac"].read_bytes()[:8192] + rng.bytes(100_000))
    (d / "random.mp3").write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + rng.bytes(100_000))
    (d / "a_directory.wav").mkdir()
    for kind in ("flac", "mp3", "wav_44k_stereo", "m4a", "m4a_faststart", "mkv_video"):
        src = files[kind]
        _truncated(src, d / f"truncated_{kind}{src.suffix}")
    return {p.name: p for p in d.iterdir()} | {"missing.flac": d / "missing.flac"}


@pytest.mark.parametrize("name, reason", [
    ("missing.flac", "no such file"),
    ("a_directory.wav", "directory"),
    ("empty.wav", "empty"),
    ("notes.txt", "not an audio file"),
    ("image.png", "not an audio file"),
    ("corrupt.flac", "no audio could be decoded"),
    ("random.mp3", "corrupt"),
    ("truncated_flac.flac", "truncated"),  # STREAMINFO states the sample count
    ("truncated_mp3.mp3", "truncated"),  # Xing header states the frame count
    ("truncated_wav_44k_stereo.wav", "truncated"),  # RIFF data-chunk size
    ("truncated_m4a_faststart.m4a", "truncated"),  # moov first: duration survives
    ("truncated_m4a.m4a", "corrupt"),  # moov was at the end and is gone: cannot even open
    ("truncated_mkv_video.mkv", "truncated"),  # Matroska per-track DURATION tag
])
def test_bad_inputs_raise_one_line_errors_naming_the_file(bad, name, reason):
    with pytest.raises(AudioDecodeError) as caught:
        decode_audio(bad[name])
    message = str(caught.value)
    assert name in message and reason in message and "\n" not in message
    if reason == "truncated":
        assert "header says 11." in message


def test_truncation_is_reported_from_a_file_object_too(bad):
    with open(bad["truncated_wav_44k_stereo.wav"], "rb") as f, pytest.raises(AudioDecodeError, match="truncated"):
        decode_audio(f)


def test_probe_of_a_missing_file_raises(bad):
    with pytest.raises(AudioDecodeError, match="missing.flac: no such file"):
        probe_duration(bad["missing.flac"])


@pytest.mark.parametrize("kind", ["mp3_no_xing", "opus"])
def test_undetectable_truncations_decode_what_is_there(files, tmp_path, kind):
    # Without a Xing header an MP3's length is a bitrate estimate of the bytes present, and
    # FFmpeg reads an Ogg length from its last page: the cut file looks complete, and is decoded.
    cut = _truncated(files[kind], tmp_path / f"cut{files[kind].suffix}")
    audio = decode_audio(cut)
    assert 3.5 < len(audio) / 16000 < 5.0
