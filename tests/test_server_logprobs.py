"""include[]=logprobs over real HTTP with the official openai client: each token of the text with
its log-probability, in the json answer, in every streamed delta and done event, and in a
job's stored result; a model without token log-probabilities is a 400 naming it."""

import time

import httpx
import openai
import pytest

from long_audio import english_pieces, joined, write_flac
from test_server_helpers import fake_transcriber, server


@pytest.fixture(scope="module")
def half_minute(tmp_path_factory):
    """About 40 s of real English speech: more than one Whisper window, so more than one delta."""
    path = tmp_path_factory.mktemp("logprobs") / "forty-seconds.flac"
    audio = joined(english_pieces()[:6], seed=3)
    assert len(audio) / 16000 > 31
    return write_flac(path, audio)


@pytest.fixture(scope="module")
def one_window_client(tmp_path_factory):
    """tiny.en one window a batch (FunASR-style batching: no memory profile to take), so each
    window's text leaves as its own delta."""
    from tingxie.engine.pipeline import Transcriber
    from tingxie.options import BatchOptions, ModelOptions, TranscribeOptions

    options = TranscribeOptions(model=ModelOptions(name="whisper-tiny.en"),
                                batch=BatchOptions(batch_size_s=60.0, max_batch_size=1))
    with server(Transcriber(options), tmp_path_factory.mktemp("one-window")) as (url, _):
        yield openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=300)


def create(client, path, **kwargs):
    with open(path, "rb") as audio:
        return client.audio.transcriptions.create(file=audio, model="whisper-1", **kwargs)


def check_tokens(logprobs, text):
    """The tokens join to the text, their bytes to its UTF-8, and each is a log-probability."""
    assert logprobs, "no logprobs"
    assert "".join(entry.token for entry in logprobs) == text
    assert bytes(int(b) for entry in logprobs for b in entry.bytes) == text.encode()  # floats in Transcription
    assert all(entry.logprob <= 0.0 for entry in logprobs)
    assert any(entry.logprob < 0.0 for entry in logprobs)  # not all certain: real values


def test_json_answers_carry_the_tokens_of_their_text(client, data_dir):
    plain = create(client, data_dir / "jfk.flac")
    result = create(client, data_dir / "jfk.flac", include=["logprobs"])
    assert plain.logprobs is None
    assert result.text == plain.text  # asking for them does not change the text
    check_tokens(result.logprobs, result.text)
    assert len(result.logprobs) >= 20  # jfk's 22 words, as tokens


@pytest.mark.slow  # a real model end to end
def test_every_streamed_delta_carries_its_own_tokens(one_window_client, half_minute):
    client = one_window_client
    whole = create(client, half_minute, include=["logprobs"])
    events = list(create(client, half_minute, stream=True, include=["logprobs"]))
    deltas, done = events[:-1], events[-1]
    assert done.type == "transcript.text.done" and len(deltas) >= 2
    for delta in deltas:
        assert delta.type == "transcript.text.delta"
        check_tokens(delta.logprobs, delta.delta)
    assert "".join(delta.delta for delta in deltas) == done.text == whole.text
    check_tokens(done.logprobs, done.text)
    assert [(e.token, e.logprob) for d in deltas for e in d.logprobs] == [(e.token, e.logprob) for e in done.logprobs]
    assert [(e.token, e.logprob) for e in done.logprobs] == [(e.token, e.logprob) for e in whole.logprobs]


def test_a_job_keeps_its_logprobs(client, tiny_server, data_dir):
    url, _ = tiny_server
    with httpx.Client(base_url=url, timeout=120) as http:
        created = http.post("/v1/jobs", files={"file": ("jfk.flac", (data_dir / "jfk.flac").read_bytes())},
                            data={"model": "whisper-1", "include[]": "logprobs"})
        assert created.status_code == 202, created.text
        job = created.json()["id"]
        deadline = time.monotonic() + 300
        while http.get(f"/v1/jobs/{job}").json()["state"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.2)
        stored = http.get(f"/v1/jobs/{job}/result").json()  # rendered from the job store's rows
    direct = create(client, data_dir / "jfk.flac", include=["logprobs"])
    assert stored["text"] == direct.text
    assert stored["logprobs"] == [entry.model_dump() for entry in direct.logprobs]


@pytest.mark.parametrize("kwargs, words", [
    ({"include": ["logprobs"], "response_format": "verbose_json"}, "needs response_format json"),
    ({"include": ["segments"]}, "'segments' is not one of logprobs"),
])
def test_bad_includes_are_400s_in_openai_shape(client, data_dir, kwargs, words):
    with pytest.raises(openai.BadRequestError) as caught:
        create(client, data_dir / "jfk.flac", **kwargs)
    body = caught.value.body
    assert caught.value.status_code == 400 and body["param"] == "include[]" and body["type"] == "invalid_request_error"
    assert words in body["message"]


def test_a_model_without_token_logprobs_is_a_400_naming_it(tmp_path, data_dir):
    """The fake backend, like Paraformer, declares no token log-probabilities (Backend.token_logprobs)."""
    with server(fake_transcriber(), tmp_path) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=60)
        with pytest.raises(openai.BadRequestError) as caught:
            create(client, data_dir / "jfk.flac", include=["logprobs"])
        body = caught.value.body
        assert body["param"] == "include[]" and body["code"] == "unsupported_include"
        assert "model 'fake'" in body["message"] and "log-probabilities" in body["message"]
        with pytest.raises(openai.BadRequestError):  # streamed: refused before any event
            list(create(client, data_dir / "jfk.flac", include=["logprobs"], stream=True))
        assert create(client, data_dir / "jfk.flac").text  # without include, the same model answers


def test_entries_join_to_the_text_whatever_the_windows_spaces():
    """logprob_entries on windows whose tokens carry their own leading spaces (English) and none
    (Chinese, joined without a space): the tokens join to join_texts' text, and the entries of
    the first windows never change as more follow (what a stream sends is a suffix)."""
    from tingxie.segments import SegmentResult, TextSegment, TokenLogprob, join_texts
    from tingxie.server.logprobs import logprob_entries

    def window(index, pieces, tokens):
        return SegmentResult(index, tuple(TextSegment(0.0, 1.0, text) for text in pieces),
                             logprobs=tuple(TokenLogprob(token.encode(), -0.5) for token in tokens))

    windows = [window(0, ["Hello there."], [" Hello", " there", "."]),
               window(1, ["Ask not.", "Ask what."], [" Ask", " not", ".", " Ask", " what", ".", " "]),
               window(2, ["大家好"], ["大家", "好"]),
               window(3, ["你好"], [" 你", "好"]),
               window(4, [], [])]
    text = join_texts(piece.text for w in windows for piece in w.pieces)
    entries = logprob_entries(windows)
    assert "".join(entry["token"] for entry in entries) == text == "Hello there. Ask not. Ask what. 大家好你好"
    assert all(bytes(entry["bytes"]) == entry["token"].encode() for entry in entries)
    for k in range(len(windows)):
        assert logprob_entries(windows[:k]) == entries[:len(logprob_entries(windows[:k]))]
