"""The page reads only files uploaded through it: a client-given server path is a 4xx, through
the page's HTTP API as a client calls it (issue 20, point 1)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from test_server_helpers import DATA, fake_transcriber, server, wait_for
from tingxie.ui.file_guard import PathRefused, refused_paths, upload_folder, uploaded_file
from tingxie.ui.mount import page_mount

JFK = DATA / "jfk.flac"


def file_data(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


@pytest.fixture
def page(tmp_path):
    with server(fake_transcriber(), tmp_path, mount=page_mount()) as (url, service):
        yield url, service


def test_a_server_path_sent_as_the_upload_is_refused_and_no_job_starts(page, tmp_path):
    url, service = page
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"rows": [{"name": "leaked"}]}))
    with httpx.Client(base_url=url, timeout=30) as client:
        for path in (str(JFK.resolve()), str(secret), "/etc/passwd", "/no/such/file",
                     f"{upload_folder()}/../../{JFK.resolve()}"):
            start = client.post("/ui/gradio_api/call/on_start",
                                json={"data": [file_data(path), None, service.model_name, "auto", "auto", ""]})
            assert start.status_code == 400, (path, start.text)
            assert start.json()["error"]["code"] == "path_not_allowed"
            assert path not in start.text  # says nothing about whether it exists
            bench = client.post("/ui/gradio_api/call/show_bench", json={"data": [file_data(path)]})
            assert bench.status_code == 400 and "leaked" not in bench.text
        joined = client.post("/ui/gradio_api/queue/join", json={
            "data": [None, file_data(str(JFK.resolve())), service.model_name, "auto", "auto", ""],
            "fn_index": 0, "session_hash": "abc", "event_data": None, "trigger_id": None})
        assert joined.status_code == 400
        url_only = client.post("/ui/gradio_api/call/on_start", json={"data": [
            {"path": "x.flac", "url": f"{url}/ui/gradio_api/file={JFK.resolve()}",
             "meta": {"_type": "gradio.FileData"}}, None, service.model_name, "auto", "auto", ""]})
        assert url_only.status_code == 400
    assert service.store.recent() == []  # no job was made from a server file


def test_a_file_uploaded_through_the_page_still_starts_a_job(page):
    url, service = page
    client = Client(f"{url}/ui/", verbose=False)
    status, job_id, _ = client.predict(handle_file(str(JFK)), None, service.model_name, "auto", "auto", "",
                                       api_name="/on_start")
    assert job_id and "jfk.flac" in status
    wait_for(lambda: (service.job_view(job_id) or {}).get("state") == "succeeded", 60)


def test_uploaded_file_accepts_only_regular_files_inside_the_upload_folder(tmp_path):
    folder = tmp_path / "uploads"
    (folder / "abc").mkdir(parents=True)
    inside = folder / "abc" / "a.flac"
    inside.write_bytes(b"x")
    outside = tmp_path / "outside.flac"
    outside.write_bytes(b"y")
    os.symlink(outside, folder / "abc" / "link.flac")
    folder = folder.resolve()
    assert uploaded_file(str(inside), folder) == inside.resolve()
    for path in (str(outside), str(folder / "abc" / "link.flac"), str(folder / "abc" / ".." / ".." / "outside.flac"),
                 str(folder), str(folder / "abc"), "", "a\x00b", str(folder / "missing")):
        with pytest.raises(PathRefused):
            uploaded_file(path, folder)
    assert refused_paths({"data": [{"path": str(inside)}, [{"path": str(outside)}], "text", None]}, folder) == [
        str(outside)]
    assert refused_paths({"url": "https://example.com/a.flac"}, folder) == ["https://example.com/a.flac"]
