"""Every limit and auth rule of `tingxie serve`, over real HTTP on loopback, with a fake model.

Each test shows the status code, and that nothing else was affected: other requests still
succeed, nothing stays queued, no upload is left on disk, no job row is created.
"""

import builtins
import threading

import av
import httpx
import pytest

from long_audio import english_pieces, joined
from test_server_helpers import DATA, fake_transcriber, flac_bytes, server, uploads_left, wait_for

JFK = (DATA / "jfk.flac").read_bytes()  # 11 s, 1.1 MB
SHORT = (DATA / "ljspeech" / "LJ001-0002.flac").read_bytes()  # 1.9 s


def transcribe(client, content=SHORT, name="a.flac", **data):
    return client.post("/v1/audio/transcriptions", files={"file": (name, content)}, data=data)


def assert_error(response, status, code=None, param=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error


def assert_unaffected(client, service, tmp_path, submitted):
    """A normal request still works; nothing is queued or left on disk; no other work was admitted."""
    assert transcribe(client).status_code == 200
    assert service.live == {}
    assert uploads_left(tmp_path) == []
    assert service.metrics.value("tingxie_submitted_total", kind="request") == submitted + 1
    assert service.store.unfinished() == []


def test_api_keys_are_required_on_every_route_but_health(tmp_path):
    with server(fake_transcriber(), tmp_path, api_keys=("key-one", "key-two")) as (url, service), \
            httpx.Client(base_url=url, timeout=30) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic key-one"},
                        {"Authorization": "Bearer  x key-one"}, {"Authorization": "key-one"}):
            response = client.post("/v1/audio/transcriptions", files={"file": ("a.flac", SHORT)}, headers=headers)
            assert_error(response, 401, "invalid_api_key")
            assert response.headers["www-authenticate"] == "Bearer"
        for path in ("/v1/models", "/v1/jobs/x", "/metrics"):
            assert_error(client.get(path), 401)
        assert_error(client.post("/v1/jobs", files={"file": ("a.flac", SHORT)}), 401)
        assert client.get("/healthz").status_code == 200
        assert service.metrics.value("tingxie_submitted_total", kind="request") == 0  # nothing got in

        client.headers["Authorization"] = "Bearer key-two"
        assert client.get("/v1/models").status_code == 200
        assert_unaffected(client, service, tmp_path, submitted=0)
        client.headers["Authorization"] = "Bearer key-one"
        assert transcribe(client).json()["text"]


def test_an_upload_over_the_size_limit_is_413_with_or_without_a_length_header(tmp_path):
    with server(fake_transcriber(), tmp_path, max_upload_bytes=200_000) as (url, service), \
            httpx.Client(base_url=url, timeout=30) as client:
        assert_error(transcribe(client, JFK), 413, "upload_too_large")
        assert_error(client.post("/v1/jobs", files={"file": ("a.flac", JFK)}), 413, "upload_too_large")
        boundary = "tingxieboundary"
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.flac"\r\n'
                f"Content-Type: audio/flac\r\n\r\n").encode() + JFK + f"\r\n--{boundary}--\r\n".encode()
        chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))  # no Content-Length: chunked
        response = client.post("/v1/audio/transcriptions", content=chunks,
                               headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert "content-length" not in response.request.headers
        assert_error(response, 413, "upload_too_large")
        assert_unaffected(client, service, tmp_path, submitted=0)


def test_audio_over_the_duration_limit_is_413_from_the_header_or_while_decoding(tmp_path):
    streamed = flac_bytes(joined(english_pieces()[:3]), streamed=True)  # 23 s; the header states no length
    with server(fake_transcriber(), tmp_path, max_duration_s=10.0) as (url, service), \
            httpx.Client(base_url=url, timeout=30) as client:
        error = assert_error(transcribe(client, JFK), 413, "audio_too_long")
        assert "11.0 s" in error["message"] and "10 s" in error["message"]
        assert_error(client.post("/v1/jobs", files={"file": ("a.flac", JFK)}), 413, "audio_too_long")
        assert service.metrics.value("tingxie_submitted_total", kind="request") == 0  # refused at the door
        error = assert_error(transcribe(client, streamed), 413, "audio_too_long")
        assert "at least" in error["message"]
        assert_unaffected(client, service, tmp_path, submitted=1)  # the streamed one was admitted, then refused


def test_a_full_queue_answers_429_with_retry_after_and_the_queued_work_finishes(tmp_path):
    with server(fake_transcriber(delay_s=1.5), tmp_path, max_queue=1) as (url, service), \
            httpx.Client(base_url=url, timeout=30) as client:
        first = {}
        thread = threading.Thread(target=lambda: first.setdefault("response", transcribe(client, JFK)))
        thread.start()
        wait_for(lambda: service.live)
        for response in (transcribe(client), client.post("/v1/jobs", files={"file": ("a.flac", SHORT)})):
            assert_error(response, 429, "queue_full")
            assert int(response.headers["retry-after"]) >= 1
        thread.join(30)
        assert first["response"].status_code == 200 and first["response"].json()["text"]
        assert service.metrics.value("tingxie_rejected_total", reason="queue_full") == 2
        assert_unaffected(client, service, tmp_path, submitted=1)


def test_corrupt_audio_is_400_with_the_decoders_reason_naming_the_clients_file(tmp_path):
    truncated = JFK[: int(len(JFK) * 0.4)]
    with server(fake_transcriber(), tmp_path) as (url, service), httpx.Client(base_url=url, timeout=30) as client:
        cases = [(b"not audio at all" * 100, "not an audio file, or corrupt"), (b"", "empty file"),
                 (truncated, "truncated")]
        for content, reason in cases:
            error = assert_error(transcribe(client, content, name="talk.flac"), 400, "invalid_audio", "file")
            assert reason in error["message"] and error["message"].startswith("talk.flac: ")
            assert str(tmp_path) not in error["message"]  # the server's paths stay private
        assert_error(client.post("/v1/jobs", files={"file": ("a.flac", b"junk" * 10)}), 400, "invalid_audio")
        assert_unaffected(client, service, tmp_path, submitted=1)  # only the truncated one decoded that far


def test_a_path_named_by_the_client_is_never_read(tmp_path, monkeypatch):
    opened = []
    real_open, real_av_open = builtins.open, av.open
    monkeypatch.setattr(builtins, "open", lambda file, *a, **k: opened.append(str(file)) or real_open(file, *a, **k))
    monkeypatch.setattr(av, "open", lambda file, *a, **k: opened.append(str(file)) or real_av_open(file, *a, **k))
    with server(fake_transcriber(), tmp_path) as (url, service), httpx.Client(base_url=url, timeout=30) as client:
        for data in ({"file": "/etc/passwd"}, {"file": "file:///etc/passwd"}):
            response = client.post("/v1/audio/transcriptions", data=data, files={"other": ("x", b"x")})
            assert_error(response, 400, param="file")
        response = client.post("/v1/audio/transcriptions", files={"file": ("/etc/passwd", SHORT)},
                               data={"path": "/etc/passwd", "url": "file:///etc/passwd", "response_format": "verbose_json"})
        assert response.status_code == 200 and "root:" not in response.text
        assert response.json()["text"] == transcribe(client).json()["text"]  # the uploaded bytes, nothing else
        assert not [path for path in opened if "passwd" in path]
        assert_unaffected(client, service, tmp_path, submitted=2)


@pytest.mark.parametrize("data, param", [
    ({"model": "gpt-4o-transcribe"}, "model"), ({"language": "de"}, "language"), ({"temperature": "0.7"}, "temperature"),
    ({"temperature": "hot"}, "temperature"), ({"prompt": "Hello."}, "prompt"),
    ({"timestamp_granularities[]": "word"}, "timestamp_granularities[]"), ({"stream": "true", "response_format": "srt"}, "stream"),
])
def test_requests_the_loaded_model_cannot_honour_are_400(tmp_path, data, param):
    with server(fake_transcriber(), tmp_path) as (url, service), httpx.Client(base_url=url, timeout=30) as client:
        assert_error(transcribe(client, **data), 400, param=param)
        assert_error(client.post("/v1/jobs", files={"file": ("a.flac", SHORT)}, data=data), 400, param=param)
        for accepted in ({"model": "whisper-1"}, {"model": "fake", "temperature": "0"},
                         {"timestamp_granularities[]": "segment", "response_format": "verbose_json"}):
            assert transcribe(client, **accepted).status_code == 200
        assert_unaffected(client, service, tmp_path, submitted=3)


def test_a_request_without_a_file_or_with_a_bad_body_is_400(tmp_path):
    with server(fake_transcriber(), tmp_path) as (url, service), httpx.Client(base_url=url, timeout=30) as client:
        assert_error(client.post("/v1/audio/transcriptions", data={"model": "whisper-1"}), 400, param="file")
        assert_error(client.post("/v1/audio/transcriptions", json={"file": "x"}), 400)
        assert_error(client.post("/v1/audio/transcriptions", content=b"--x\r\nbroken",
                                 headers={"Content-Type": "multipart/form-data; boundary=x"}), 400)
        assert_error(client.get("/v1/nothing"), 404)
        assert_unaffected(client, service, tmp_path, submitted=0)
