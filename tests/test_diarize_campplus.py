"""--spk-model: FunASR's CAM++ as diarization's voice encoder, on a random-weight CAM++ saved in
FunASR's model-directory format (no weights can be downloaded here): tingxie's vectors are the
ones FunASR's own AutoModel computes, its windows are FunASR's sv_chunk windows, and a whole run
labels speakers with it."""

from __future__ import annotations

import json

import numpy as np
import pytest

import funasr  # noqa: F401  (the test install has the funasr extra: missing fails, never skips)

from funasr_random_model import CAMPLUS, save_model_dir
from tingxie.audio.decode import decode_audio
from tingxie.diarize.campplus import WINDOW_S, CamPlusEncoder, ChunkEmbedder, window_starts
from tingxie.errors import ModelNotFoundError, OptionError
from tingxie.options import DiarizeOptions
from tingxie.segments import AudioSegment


@pytest.fixture(scope="module")
def campplus_dir(tmp_path_factory):
    return save_model_dir(tmp_path_factory.mktemp("campplus") / "campplus-random", CAMPLUS, [], seed=3)


@pytest.fixture(scope="module")
def encoder(campplus_dir):
    return CamPlusEncoder(campplus_dir)


@pytest.fixture(scope="module")
def jfk(data_dir):
    return decode_audio(str(data_dir / "jfk.flac"))


def test_the_vectors_are_funasrs_own(campplus_dir, encoder, jfk):
    """Each window through FunASR's AutoModel.generate, one at a time, against tingxie's batch."""
    from funasr import AutoModel

    step = int(0.75 * 16000)
    windows = [jfk[i * step:i * step + int(WINDOW_S * 16000)] for i in range(6)]
    ours = encoder.embed(windows)
    model = AutoModel(model=str(campplus_dir), device="cpu", disable_update=True, disable_pbar=True,
                      log_level="ERROR")
    theirs = np.stack([model.generate(input=window)[0]["spk_embedding"][0].numpy() for window in windows])
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    assert ours.shape == (6, 192)
    np.testing.assert_allclose(ours, theirs, atol=2e-5)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("seconds", [0.4, 0.6, 1.5, 1.6, 2.25, 7.3, 30.0])
def test_the_windows_are_funasrs_sv_chunk(seconds):
    from funasr.models.campplus.utils import sv_chunk

    samples = int(seconds * 16000)
    chunks = sv_chunk([[0.0, seconds, np.zeros(samples, np.float32)]])
    expected = [round(start * 16000) for start, _, _ in chunks] if seconds >= 0.5 else []  # tingxie skips < 0.5 s
    assert window_starts(samples) == expected


def test_a_packed_segment_is_windowed_per_stretch_with_file_times(encoder, jfk):
    """Windows never straddle the silence a packing cut out, and carry file times."""
    first, second = jfk[:3 * 16000], jfk[5 * 16000:9 * 16000]
    segment = AudioSegment(0, 10.0, 24.0, np.concatenate([first, second]),
                           ((0.0, 10.0, 3.0), (3.0, 20.0, 4.0)))
    embedder = ChunkEmbedder(encoder)
    embedder.add(segment)
    windows = embedder.finish()
    assert windows.starts == pytest.approx([10.0, 10.75, 11.5, 20.0, 20.75, 21.5, 22.25, 22.5])
    assert windows.ends == pytest.approx([s + 1.5 for s in windows.starts])
    alone = encoder.embed([second[int(0.75 * 16000):int(2.25 * 16000)]])[0]
    assert windows.vectors[4] == pytest.approx(alone, abs=1e-5)  # the same audio, the same vector


def test_a_bad_speaker_model_is_one_clear_error(tmp_path, data_dir):
    with pytest.raises(OptionError, match="--spk-model cam\\+\\+ needs --diarize"):
        DiarizeOptions(speaker_model="cam++")
    from tingxie.diarize.stage import load_encoder

    with pytest.raises(ModelNotFoundError, match="not a FunASR model directory"):
        load_encoder(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="unknown speaker model 'no-such-voices'"):
        load_encoder("no-such-voices")


@pytest.mark.slow  # a real recogniser end to end
def test_transcribe_labels_speakers_with_cam_plus(campplus_dir, data_dir, tmp_path):
    from tingxie.cli.main import main

    out = tmp_path / "out"
    code = main(["transcribe", str(data_dir / "jfk.flac"), "-o", str(out), "-f", "json", "-q", "-m", "whisper-tiny.en",
                 "--diarize", "--speakers", "2", "--spk-model", str(campplus_dir)])
    assert code == 0
    result = json.loads((out / "jfk.json").read_text())
    assert result["segments"] and all(segment["speaker"] in ("Speaker 1", "Speaker 2")
                                      for segment in result["segments"])
