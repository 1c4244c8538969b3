"""OpenAI's newer transcription features over real HTTP with the official openai client:
streamed text, word times, usage, per-request prompt and temperature, translations,
chunking_strategy, and OpenAI-shaped 4xx errors for every new bad input.
"""

import json
import math
import threading
import time

import httpx
import openai  # the dev extra: missing fails, never skips
import pytest

from long_audio import english_pieces, joined, write_flac
from tingxie.benchmark.evaluation import normalize_english
from tingxie.server.config import ServerConfig
from tingxie.server.runner import running


@pytest.fixture(scope="module")
def two_minutes(tmp_path_factory):
    """A 2-minute English recording: the 17 real clips of tests/data, twice, with pauses."""
    pieces = english_pieces()
    path = tmp_path_factory.mktemp("long") / "two-minutes.flac"
    audio = joined(pieces + pieces, seed=5)
    assert len(audio) / 16000 >= 120
    return write_flac(path, audio)


def create(client, path, **kwargs):
    with open(path, "rb") as audio:
        return client.audio.transcriptions.create(file=audio, model=kwargs.pop("model", "whisper-1"), **kwargs)


@pytest.mark.slow
def test_streamed_deltas_join_to_the_whole_text_and_the_first_comes_early(client, two_minutes, tiny_server):
    started = time.perf_counter()
    whole = create(client, two_minutes)
    whole_s = time.perf_counter() - started

    started = time.perf_counter()
    events, first_delta_s = [], None
    for event in create(client, two_minutes, stream=True):
        if event.type == "transcript.text.delta" and first_delta_s is None:
            first_delta_s = time.perf_counter() - started
        events.append(event)
    types = [event.type for event in events]
    assert types[-1] == "transcript.text.done" and set(types[:-1]) == {"transcript.text.delta"}
    assert len(types) > 2  # the text came in more than one piece
    deltas = "".join(event.delta for event in events[:-1])
    assert deltas == whole.text == events[-1].text
    assert events[-1].usage.seconds == whole.usage.seconds
    assert first_delta_s < whole_s / 2, (first_delta_s, whole_s)


def test_a_client_that_hangs_up_on_a_stream_cancels_its_work(tiny_server, two_minutes):
    url, service = tiny_server
    cancelled_before = _finished(service, "cancelled")
    with httpx.Client(timeout=120) as http:
        with http.stream("POST", url + "/v1/audio/transcriptions",
                         files={"file": ("long.flac", two_minutes.read_bytes())},
                         data={"model": "whisper-1", "stream": "true"}) as response:
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
            first = next(response.iter_lines())
            assert json.loads(first.removeprefix("data: "))["type"] == "transcript.text.delta"
    deadline = time.monotonic() + 30
    while service.live and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not service.live
    assert _finished(service, "cancelled") == cancelled_before + 1


def _finished(service, state: str) -> float:
    return service.metrics.value("tingxie_finished_total", state=state, kind="request")


@pytest.mark.slow
def test_word_times_lie_in_order_inside_their_segments(client, data_dir):
    result = create(client, data_dir / "jfk.flac", response_format="verbose_json",
                    timestamp_granularities=["word", "segment"])
    words, segments = result.words, result.segments
    assert len(words) >= 20 and segments
    starts = [w.start for w in words]
    assert starts == sorted(starts) and all(w.start <= w.end for w in words)
    for segment in segments:
        inside = [w for w in words if segment.start - 0.001 <= w.start and w.end <= segment.end + 0.001]
        assert normalize_english(" ".join(w.word for w in inside)) == normalize_english(segment.text)
    assert normalize_english(" ".join(w.word for w in words)) == normalize_english(result.text)
    assert all(w.word == w.word.strip() and w.word for w in words)

    only_words = create(client, data_dir / "jfk.flac", response_format="verbose_json", timestamp_granularities=["word"])
    assert only_words.segments is None and [w.word for w in only_words.words] == [w.word for w in words]


def test_usage_in_json_and_verbose_json(client, data_dir):
    for fmt in ("json", "verbose_json"):
        result = create(client, data_dir / "jfk.flac", response_format=fmt)
        assert result.usage.type == "duration" and result.usage.seconds == 11  # jfk.flac: 11.0 s


def test_prompt_and_temperature_per_request_batched_apart(client, data_dir, tiny_server):
    _, service = tiny_server
    seen = []
    run = service.scheduler.executor.run

    def recording(batch, decode=None):
        seen.append(decode)
        return run(batch, decode)

    service.scheduler.executor.run = recording
    try:
        answers = {}

        def ask(key, **kwargs):
            answers[key] = create(client, data_dir / "jfk.flac", response_format="verbose_json", **kwargs)

        threads = [threading.Thread(target=ask, args=("plain",)),
                   threading.Thread(target=ask, args=("prompted",), kwargs={"prompt": "President Kennedy's speech."}),
                   threading.Thread(target=ask, args=("warm",), kwargs={"temperature": 0.4})]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
    finally:
        service.scheduler.executor.run = run
    assert {d.initial_prompt for d in seen} == {None, "President Kennedy's speech."}
    assert {d.temperature[0] for d in seen} == {0.0, 0.4}  # 0: the server's fallback temperatures
    assert answers["warm"].segments[0].temperature == 0.4 and answers["plain"].segments[0].temperature == 0.0
    assert "ask not what your country" in answers["prompted"].text.lower()
    assert answers["plain"].text == create(client, data_dir / "jfk.flac").text  # alone or batched: the same


def test_chunking_strategy_auto_and_server_vad(client, data_dir):
    plain = create(client, data_dir / "jfk.flac").text
    assert create(client, data_dir / "jfk.flac", chunking_strategy="auto").text == plain
    tuned = create(client, data_dir / "jfk.flac", chunking_strategy={
        "type": "server_vad", "threshold": 0.6, "prefix_padding_ms": 300, "silence_duration_ms": 500})
    assert "ask not what your country" in tuned.text.lower()


@pytest.mark.parametrize("kwargs, param", [
    ({"model": "whisper-nonexistent"}, "model"),
    ({"chunking_strategy": {"type": "semantic"}}, "chunking_strategy"),
    ({"chunking_strategy": {"type": "server_vad", "threshold": 1.5}}, "chunking_strategy"),
    ({"chunking_strategy": {"type": "server_vad", "loudness": 3}}, "chunking_strategy"),
    ({"response_format": "srt", "stream": True}, "stream"),
    ({"response_format": "verbose_json", "stream": True}, "stream"),
    ({"response_format": "json", "timestamp_granularities": ["word"]}, "timestamp_granularities[]"),
    ({"include": ["logprobs"], "response_format": "verbose_json"}, "include[]"),  # OpenAI's: json only
    ({"language": "zh"}, "language"),  # an English-only model
])
def test_every_new_bad_input_is_a_4xx_in_openai_shape(client, data_dir, kwargs, param):
    with pytest.raises(openai.BadRequestError) as caught:
        result = create(client, data_dir / "jfk.flac", **kwargs)
        if kwargs.get("stream"):
            list(result)
    error = caught.value
    assert error.status_code == 400 and error.body["param"] == param and error.body["type"] == "invalid_request_error"
    assert error.body["message"]


def test_an_english_only_model_refuses_to_translate(client, data_dir):
    with pytest.raises(openai.BadRequestError) as caught:
        with open(data_dir / "asr_example.wav", "rb") as audio:
            client.audio.translations.create(file=audio, model="whisper-1")
    assert caught.value.body["param"] == "model" and "English-only" in caught.value.body["message"]


@pytest.fixture(scope="module")
def base_client(base_transcriber, tmp_path_factory):
    folder = tmp_path_factory.mktemp("base-server")
    with running(base_transcriber, ServerConfig(db_path=folder / "jobs.db")) as (url, _):
        yield openai.OpenAI(base_url=url + "/v1", api_key="not-needed", max_retries=0, timeout=300)


@pytest.mark.slow
def test_translations_answer_english_for_the_mandarin_clip(base_client, data_dir):
    with open(data_dir / "asr_example.wav", "rb") as audio:
        result = base_client.audio.translations.create(file=audio, model="whisper-base", response_format="verbose_json")
    assert result.task == "translate" and result.language == "zh"
    words = normalize_english(result.text).split()
    assert len(words) >= 3 and all(word.isascii() for word in words), result.text
    with open(data_dir / "asr_example.wav", "rb") as audio:
        chinese = base_client.audio.transcriptions.create(file=audio, model="whisper-base", language="zh")
    assert any("\u4e00" <= ch <= "\u9fff" for ch in chinese.text)  # the same server still transcribes
    assert math.isclose(result.duration, 5.6, abs_tol=0.1)


def test_a_job_keeps_its_words_prompt_and_chunking(client, tiny_server, data_dir):
    url, _ = tiny_server
    form = {"model": "whisper-1", "response_format": "verbose_json", "timestamp_granularities[]": ["word", "segment"],
            "prompt": "President Kennedy's speech.", "chunking_strategy": "auto"}
    with httpx.Client(base_url=url, timeout=120) as http:
        created = http.post("/v1/jobs", files={"file": ("jfk.flac", (data_dir / "jfk.flac").read_bytes())}, data=form)
        assert created.status_code == 202, created.text
        job = created.json()["id"]
        deadline = time.monotonic() + 300
        while http.get(f"/v1/jobs/{job}").json()["state"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.2)
        result = http.get(f"/v1/jobs/{job}/result").json()
    direct = create(client, data_dir / "jfk.flac", response_format="verbose_json", timestamp_granularities=["word", "segment"],
                    prompt="President Kennedy's speech.")
    assert result["text"] == direct.text
    assert [(w["word"], w["start"], w["end"]) for w in result["words"]] == [(w.word, w.start, w.end) for w in direct.words]
