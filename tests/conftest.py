import os
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session", autouse=True)
def _private_model_cache(tmp_path_factory):
    # Tests assemble the embedded model in their own cache, never the user's.
    os.environ.setdefault("TINGXIE_CACHE_DIR", str(tmp_path_factory.mktemp("tingxie-cache")))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def tiny_transcriber():
    from tingxie.options import ModelOptions, TranscribeOptions
    from tingxie.engine.pipeline import Transcriber

    return Transcriber(TranscribeOptions(model=ModelOptions(name="whisper-tiny.en")))


@pytest.fixture(scope="session")
def base_transcriber():
    from tingxie.engine.pipeline import Transcriber

    return Transcriber()  # the default: embedded whisper-base


# Fixtures that load a real model or build one (the embedded Whisper models, the random-weight
# Paraformer and its FunASR companions): a test that uses one, directly or through another
# fixture, belongs to the full tier, not the fast one (`pytest -m "not slow"`).
MODEL_FIXTURES = frozenset({
    "tiny_transcriber", "base_transcriber", "tiny_server", "client",
    "paraformer_dir", "punc_dir", "vad_dir", "funasr_model", "funasr_alone", "paraformer", "onnx_paraformer",
    "make_paraformer", "each_engine",
})


def pytest_collection_modifyitems(config, items):
    """Tests that use a model fixture are marked slow. The GPU tests run only when asked for
    (`pytest -m cuda`): any other selection, including `-m "not slow"`, leaves them out
    (deselected, not skipped: no machine here could run them)."""
    for item in items:
        if MODEL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    if "cuda" in (config.option.markexpr or ""):
        return
    keep, gpu = [], []
    for item in items:
        (gpu if item.get_closest_marker("cuda") else keep).append(item)
    if gpu:
        config.hook.pytest_deselected(items=gpu)
        items[:] = keep


@pytest.fixture(scope="module")
def tiny_server(tiny_transcriber, tmp_path_factory):
    """`tingxie serve` with whisper-tiny.en on a free port, one per test module: (url, service)."""
    from tingxie.server.config import ServerConfig
    from tingxie.server.runner import running

    folder = tmp_path_factory.mktemp("tiny-server")
    with running(tiny_transcriber, ServerConfig(db_path=folder / "jobs.db")) as (url, service):
        yield url, service


@pytest.fixture(scope="module")
def client(tiny_server):
    """The official openai client on tiny_server."""
    import openai

    return openai.OpenAI(base_url=tiny_server[0] + "/v1", api_key="not-needed", max_retries=0, timeout=300)
