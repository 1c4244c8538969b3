"""Several models behind one server: any servable model loaded on the request naming it, the
least recently used idle one unloaded when the memory budget needs room, GET /v1/models.

The swap policy runs on fake backends whose resident memory the probe reports (each loaded
model holds 200 MiB): exact, fast, and independent of the machine. The two embedded Whisper
models run for real under the default budget, mixed and concurrent.
"""

import threading
import weakref

import httpx
import openai
import pytest

from test_server_helpers import DATA, SlowFakeBackend, server, wait_for
from tingxie.engine.pipeline import Transcriber
from tingxie.memory.planning import MemoryPlanner
from tingxie.options import BatchOptions, TranscribeOptions
from tingxie.planner.memory_model import MemoryModel
from tingxie.planner.shapes import InputShape, ShapeRule
from tingxie.server.config import ServerConfig
from tingxie.server.runner import running

MiB = 1024**2
WINDOW = InputShape(ShapeRule.FIXED_WINDOW, 30.0)
ONE_WINDOW = MemoryModel(fixed=0.0, per_item_s=1.0 * MiB, per_item_s2=0.0)  # a 30 s window: 30 MiB


class LedgerProbe:
    """Resident memory: 100 MiB of runtime and 200 MiB per model still alive."""

    device = "cpu"

    def __init__(self):
        self.models = weakref.WeakSet()
        self.most = 0

    def current_bytes(self):
        now = 100 * MiB + 200 * MiB * len(self.models)
        self.most = max(self.most, now)
        return now

    def available_bytes(self):
        return 64 * 1024 * MiB

    def release_cache(self):
        pass


class NamedBackend(SlowFakeBackend):
    __hash__ = object.__hash__  # counted in a WeakSet by identity

    def __init__(self, name, probe):
        super().__init__(0.05)
        self.name = name
        self.text_for = lambda segment: f"{name} said {segment.start:.2f}"
        probe.models.add(self)
        self.probe = probe

    def unload(self):
        self.probe.models.discard(self)


def fake_models(probe, budget_mib):
    options = TranscribeOptions(batch=BatchOptions(max_batch_size=8))

    def load(name):
        memory = MemoryPlanner(ONE_WINDOW, probe, total_budget_bytes=budget_mib * MiB, shape=WINDOW, adaptive=False)
        return Transcriber(options, backend=NamedBackend(name, probe), memory=memory)
    return load


def short_flac():
    return (DATA / "ljspeech" / "LJ001-0002.flac").read_bytes()  # 1.9 s of speech: one segment


@pytest.mark.parametrize("budget_mib, most_loaded", [(500, 1), (800, 2)])
def test_models_load_on_demand_and_swap_when_the_budget_holds_one(tmp_path, budget_mib, most_loaded):
    probe = LedgerProbe()
    load = fake_models(probe, budget_mib)
    first = load("fake-a")
    audio = short_flac()
    with server(first, tmp_path, models=("fake-b",)) as (url, service):
        service.models.loader = load
        service.models.weights_of = lambda name: 200 * MiB
        with httpx.Client(base_url=url, timeout=120) as client:
            listed = {m["id"]: m["loaded"] for m in client.get("/v1/models").json()["data"]}
            assert listed["fake-a"] and listed["whisper-1"] and not listed["fake-b"]
            answers = {}

            def ask(i, model):
                answers[i] = (model, client.post("/v1/audio/transcriptions", files={"file": ("a.flac", audio)},
                                                 data={"model": model}))

            order = ["fake-b", "fake-a", "fake-b", "whisper-1", "fake-a", "fake-b", "fake-a", "fake-b"]
            threads = [threading.Thread(target=ask, args=(i, model)) for i, model in enumerate(order)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            for model, response in answers.values():
                assert response.status_code == 200, response.text
                text = response.json()["text"]
                assert text.startswith(("fake-a" if model == "whisper-1" else model) + " said"), (model, text)
            assert len(answers) == len(order)
            listed = {m["id"]: m["loaded"] for m in client.get("/v1/models").json()["data"]}
            assert sum(listed[name] for name in ("fake-a", "fake-b")) >= 1
    # 500 MiB (475 usable) holds 100 + 200 + a 30 MiB window, not a second model: never two at once;
    # 800 MiB (760 usable) holds both
    assert probe.most <= (100 + 200 * most_loaded) * MiB
    if most_loaded == 2:
        assert probe.most == 500 * MiB  # both stayed loaded


def with_a_huge_model(probe):
    """Loaders for fake models on a 560 MiB ledger: (the fake models, them and `fake-huge`, whose
    30 s window needs 300 MiB: with its 200 MiB resident, more than the budget holds)."""
    load = fake_models(probe, 560)
    options = TranscribeOptions(batch=BatchOptions(max_batch_size=8))

    def load_huge(name):
        if name != "fake-huge":
            return load(name)
        memory = MemoryPlanner(MemoryModel(0.0, 10.0 * MiB, 0.0), probe, total_budget_bytes=560 * MiB, shape=WINDOW,
                               adaptive=False)
        return Transcriber(options, backend=NamedBackend(name, probe), memory=memory)

    return load, load_huge


def test_a_model_that_cannot_fit_even_alone_is_a_400_naming_the_numbers(tmp_path):
    probe = LedgerProbe()
    load, load_huge = with_a_huge_model(probe)

    with server(load("fake-a"), tmp_path, models=("fake-huge",)) as (url, service):
        service.models.loader = load_huge
        service.models.weights_of = lambda name: 200 * MiB
        with httpx.Client(base_url=url, timeout=60) as client:
            response = client.post("/v1/audio/transcriptions", files={"file": ("a.flac", short_flac())},
                                   data={"model": "fake-huge"})
            assert response.status_code == 400
            error = response.json()["error"]
            assert error["code"] == "model_does_not_fit" and error["param"] == "model"
            assert "560.0 MiB" in error["message"] and "'fake-huge'" in error["message"]
            assert "300.0 MiB" in error["message"]  # what one window of it needs
            answer = client.post("/v1/audio/transcriptions", files={"file": ("a.flac", short_flac())},
                                 data={"model": "fake-a"})
            assert answer.status_code == 200 and answer.json()["text"].startswith("fake-a said")
            response = client.post("/v1/audio/transcriptions", files={"file": ("a.flac", short_flac())},
                                   data={"model": "nonexistent"})
            assert response.status_code == 400 and response.json()["error"]["code"] == "model_not_found"
    assert probe.most <= 0.95 * 560 * MiB  # the budget held throughout (the huge one's weights fitted, its window not)
    assert len(probe.models) <= 1  # the huge one unloaded; the default loaded again


@pytest.mark.slow
def test_the_two_embedded_models_served_mixed_and_concurrent(tiny_transcriber, data_dir, tmp_path):
    with running(tiny_transcriber, ServerConfig(db_path=tmp_path / "jobs.db")) as (url, service):
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=600)
        listed = {m.id for m in client.models.list()}
        assert {"whisper-tiny.en", "whisper-base", "whisper-1"} <= listed
        answers = {}

        def ask(key, model, path, **kwargs):
            with open(path, "rb") as audio:
                answers[key] = client.audio.transcriptions.create(file=audio, model=model, **kwargs).text

        cases = [("tiny-jfk", "whisper-tiny.en", data_dir / "jfk.flac", {}),
                 ("base-jfk", "whisper-base", data_dir / "jfk.flac", {}),
                 ("base-zh", "whisper-base", data_dir / "asr_example.wav", {"language": "zh"}),
                 ("tiny-jfk-2", "whisper-1", data_dir / "jfk.flac", {})]
        threads = [threading.Thread(target=ask, args=(key, model, path), kwargs=kwargs)
                   for key, model, path, kwargs in cases]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(900)
        assert "ask not what your country" in answers["tiny-jfk"].lower()
        assert "ask not what your country" in answers["base-jfk"].lower()
        assert answers["tiny-jfk"] == answers["tiny-jfk-2"]
        assert any("\u4e00" <= ch <= "\u9fff" for ch in answers["base-zh"])
        assert set(service.models.loaded()) == {"whisper-tiny.en", "whisper-base"}


@pytest.mark.slow  # a real model end to end
def test_models_loaded_on_demand_keep_the_servers_options(tmp_path, data_dir):
    """--max-batch-size, the batch, model, decode and VAD flags the server started with hold for
    every model it loads later, not the defaults (FunASR-style batching: no memory profile to take)."""
    from tingxie.options import DecodeOptions, ModelOptions, VadOptions

    options = TranscribeOptions(model=ModelOptions(name="whisper-tiny.en", threads=1, replicas=1),
                                decode=DecodeOptions(beam_size=2), vad=VadOptions(threshold=0.6),
                                batch=BatchOptions(batch_size_s=60.0, max_batch_size=3))
    first = Transcriber(options)
    with server(first, tmp_path, models=("whisper-base",)) as (url, service):
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=600)
        with open(data_dir / "jfk.flac", "rb") as audio:
            text = client.audio.transcriptions.create(file=audio, model="whisper-base").text
        assert "ask not what your country" in text.lower()
        loaded = service.models.engines["whisper-base"].transcriber
    assert loaded.backend.name == "whisper-base"
    assert loaded.options.batch.max_batch_size == 3 and loaded.options.batch.batch_size_s == 60.0
    assert loaded.options.model.threads == 1 and loaded.options.model.replicas == 1
    assert loaded.options.decode.beam_size == 2 and loaded.options.vad.threshold == 0.6
    assert loaded.backend.threads == 1


@pytest.mark.slow
def test_whisper_models_in_the_hugging_face_cache_are_listed_and_served(tiny_transcriber, tmp_path, monkeypatch,
                                                                          data_dir):
    """tiny.en laid out in an offline Hugging Face cache, as huggingface_hub lays it out: listed
    by GET /v1/models, loaded on the first request naming it (by name or by repo id)."""
    from test_models_hub import TINY_REPO, lay_out_hf_cache
    from tingxie.models.registry import resolve_model

    lay_out_hf_cache(tmp_path / "hf" / "hub", TINY_REPO, resolve_model("whisper-tiny.en").path)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with running(tiny_transcriber, ServerConfig(db_path=tmp_path / "jobs.db")) as (url, service):
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=900)
        listed = {m.id: m.loaded for m in client.models.list()}
        assert listed["tiny.en"] is False and "whisper-tiny.en" in listed
        with open(data_dir / "jfk.flac", "rb") as audio:
            text = client.audio.transcriptions.create(file=audio, model="tiny.en").text
        assert "ask not what your country" in text.lower()
        with open(data_dir / "jfk.flac", "rb") as audio:
            by_repo = client.audio.transcriptions.create(file=audio, model=TINY_REPO).text
        assert by_repo == text
        assert "tiny.en" in service.models.loaded() and TINY_REPO not in service.models.loaded()
        assert {m.id: m.loaded for m in client.models.list()}["tiny.en"] is True
        loaded = service.models.engines["tiny.en"].transcriber
        assert loaded.backend.model_path.is_relative_to(tmp_path / "hf" / "hub")


def test_a_bad_preload_is_one_line_and_exit_2(tmp_path):
    """An unknown --preload name stops the start with one line naming it (no traceback)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "tingxie.cli.main", "serve", "--model", "whisper-tiny.en", "--batch-size-s", "60",
         "--preload", "whisper-nonexistent", "--port", "0", "--no-ui", "--db", str(tmp_path / "jobs.db")],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tingxie: error: cannot start: --preload whisper-nonexistent:")
    assert "unknown model 'whisper-nonexistent'" in last


def test_a_preload_the_budget_cannot_hold_stops_the_start_naming_the_numbers(tmp_path):
    """The budget case of a bad --preload (fake models on the ledger probe: exact numbers): the
    service does not start, and says why in one sentence; the command prints it and exits 2."""
    from tingxie.errors import OptionError
    from tingxie.server.runner import build

    probe = LedgerProbe()
    load, load_huge = with_a_huge_model(probe)

    _, service = build(load("fake-a"), ServerConfig(db_path=tmp_path / "jobs.db", preload=("fake-huge",)))
    service.models.loader = load_huge
    service.models.weights_of = lambda name: 200 * MiB
    with pytest.raises(OptionError) as caught:
        service.start()
    message = str(caught.value)
    assert message.startswith("--preload fake-huge: model 'fake-huge' does not fit the memory budget of 560.0 MiB")
    assert "300.0 MiB" in message and "\n" not in message
    assert all(not engine.scheduler.alive for engine in service.models.engines.values())  # stopped, nothing left running


def test_a_model_that_would_run_leaner_beside_idle_ones_loads_again_as_asked_alone(tmp_path):
    """A Transcriber fits its execution to the room it finds (Transcriber._fit_execution: fewer
    replicas where the budget is short). Loaded on demand beside idle models, it would run
    leaner only because of them: the pool unloads the idle ones and loads it again as asked.
    (The fake loader makes the leaner choice where another model is resident, as the real fit
    does under a budget for one.)"""
    import dataclasses

    probe = LedgerProbe()
    load = fake_models(probe, 800)
    loads = []

    def load_fitting(name):
        transcriber = load(name)
        others = len(probe.models) - 1
        if others:  # another model resident: the room left is short of the default execution
            leaner = dataclasses.replace(transcriber.options.model, replicas=1)
            transcriber.options = dataclasses.replace(transcriber.options, model=leaner)
        loads.append((name, others))
        return transcriber

    with server(load_fitting("fake-a"), tmp_path, models=("fake-b",)) as (url, service):
        service.models.loader = load_fitting
        service.models.weights_of = lambda name: 200 * MiB
        with httpx.Client(base_url=url, timeout=60) as client:
            answer = client.post("/v1/audio/transcriptions", files={"file": ("a.flac", short_flac())},
                                 data={"model": "fake-b"})
            assert answer.status_code == 200 and answer.json()["text"].startswith("fake-b said")
        assert service.models.loaded() == ["fake-b"]
        loaded = service.models.engines["fake-b"].transcriber
        assert loaded.options.model == loaded.requested_options.model  # as asked, not leaner
    assert loads == [("fake-a", 0), ("fake-b", 1), ("fake-b", 0)]


class GatedBackend(NamedBackend):
    """Holds its batches until the test opens the gate: its job's reservation holds till then."""

    def __init__(self, name, probe, gate):
        super().__init__(name, probe)
        self.gate = gate

    def transcribe_batch(self, batch, decode=None):
        assert self.gate.wait(120), "the gate was never opened"
        return super().transcribe_batch(batch)


def test_a_load_is_refused_while_admitted_audio_holds_the_memory_and_done_once_it_is_released(tmp_path, monkeypatch):
    """One account for admission and loading (memory_account.py): fake-b's 200 MiB fit beside
    fake-a, one window and nothing reserved (100 + 200 + 30 + 200 = 530 of the 532 MiB a 560 MiB
    budget leaves), not beside a running job's reserved audio. Read from RSS alone (what the
    ledger reports: models only), the load would have gone ahead."""
    from long_audio import english_pieces, joined
    from test_server_helpers import flac_bytes
    from tingxie.planner.memory_model import format_bytes
    from tingxie.server import models_on_demand

    probe = LedgerProbe()
    load = fake_models(probe, 560)
    gate = threading.Event()
    first = load("fake-a")
    first.backend = GatedBackend("fake-a", probe, gate)  # the job on it holds its batches
    long_audio = flac_bytes(joined(english_pieces(), seed=3))  # 2 min 13 s: its audio reserved while it waits
    try:
        with server(first, tmp_path, models=("fake-b",)) as (url, service), \
                httpx.Client(base_url=url, timeout=120) as client:
            service.models.loader = load
            service.models.weights_of = lambda name: 200 * MiB
            job = client.post("/v1/jobs", files={"file": ("jfk.flac", long_audio)}).json()["id"]
            figures = wait_for(lambda: (f := service.memory_figures()).audio_held and f)
            assert figures.reserved > 2 * MiB and figures.models == 300 * MiB  # 16.3 MiB: 266 s of float32

            monkeypatch.setattr(models_on_demand, "LOAD_WAIT_S", 1.0)
            refused = client.post("/v1/audio/transcriptions", files={"file": ("a.flac", short_flac())},
                                  data={"model": "fake-b"})
            assert refused.status_code == 503, refused.text
            error = refused.json()["error"]
            assert error["code"] == "model_busy" and refused.headers["Retry-After"] == "30"
            assert "'fake-b'" in error["message"] and "its weights are 200.0 MiB" in error["message"]
            assert "532.0 MiB" in error["message"] and format_bytes(figures.reserved) in error["message"]
            assert "busy: fake-a" in error["message"]
            assert service.models.loaded() == ["fake-a"] and probe.most == 300 * MiB  # fake-b never loaded

            monkeypatch.setattr(models_on_demand, "LOAD_WAIT_S", 60.0)
            answers = []
            waiting = threading.Thread(target=lambda: answers.append(client.post(
                "/v1/audio/transcriptions", files={"file": ("a.flac", short_flac())}, data={"model": "fake-b"})))
            waiting.start()
            waiting.join(1.0)
            assert not answers  # it waits for room while the job's audio holds it
            gate.set()  # the job finishes: its reservation ends, fake-b loads beside the idle fake-a
            waiting.join(60)
            assert answers[0].status_code == 200 and answers[0].json()["text"].startswith("fake-b said")
            assert client.get(f"/v1/jobs/{job}").json()["state"] == "succeeded"
            assert sorted(service.models.loaded()) == ["fake-a", "fake-b"]
    finally:
        gate.set()
    assert probe.most <= 0.95 * 560 * MiB
