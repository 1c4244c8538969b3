"""The server's pure parts: fairness, metrics text, the job store, form helpers."""

from dataclasses import dataclass, field

import pytest

from tingxie.segments import SegmentResult, TextSegment
from tingxie.server.fairness import admitted_lanes, fair_order
from tingxie.server.form import _display_name
from tingxie.server.metrics import Metrics
from tingxie.server.store import FinishedSegment, JobStore


@dataclass
class Lane:
    name: str
    served_s: float
    seq: int
    pending: list = field(default_factory=list)


def test_least_attained_service_goes_first_so_a_short_request_overtakes_a_long_job():
    long_job = Lane("long", served_s=600.0, seq=0, pending=[f"L{i}" for i in range(10)])
    short = Lane("short", served_s=0.0, seq=1, pending=["S0", "S1"])
    for quantum in (0.0, 120.0):
        picked = fair_order([long_job, short], cost=lambda item: 30.0, limit=4, quantum_s=quantum)
        assert [item for _, item in picked] == ["S0", "S1", "L0", "L1"]


def test_within_a_quantum_works_keep_their_arrival_order_then_take_turns():
    a = Lane("a", 0.0, 0, ["a0", "a1", "a2", "a3", "a4"])
    b = Lane("b", 0.0, 1, ["b0", "b1", "b2", "b3", "b4"])
    picked = fair_order([b, a], cost=lambda item: 30.0, limit=8, quantum_s=60.0)
    assert [item for _, item in picked] == ["a0", "a1", "b0", "b1", "a2", "a3", "b2", "b3"]


def test_without_a_quantum_equal_service_is_round_robin_ties_to_the_earlier_arrival():
    a = Lane("a", 0.0, 0, ["a0", "a1", "a2"])
    b = Lane("b", 0.0, 1, ["b0", "b1", "b2"])
    picked = fair_order([b, a], cost=lambda item: 30.0, limit=5, quantum_s=0.0)
    assert [item for _, item in picked] == ["a0", "b0", "a1", "b1", "a2"]


def test_each_lane_keeps_its_own_order_and_empty_lanes_are_skipped():
    a = Lane("a", 0.0, 0, [])
    b = Lane("b", 5.0, 1, ["b0", "b1"])
    assert [item for _, item in fair_order([a, b], lambda item: 1.0, 10, 0.0)] == ["b0", "b1"]


def test_one_at_a_time_admits_only_the_earliest_arrival():
    lanes = [Lane("late", 0.0, 5, ["x"]), Lane("early", 100.0, 2, ["y"])]
    assert [lane.name for lane in admitted_lanes(lanes, 1)] == ["early"]
    assert len(admitted_lanes(lanes, 0)) == 2


def test_metrics_render_the_prometheus_text_format():
    metrics = Metrics()
    metrics.counter("t_total", "A counter.")
    metrics.gauge("t_depth", "A gauge.", lambda: 3)
    metrics.histogram("t_seconds", "A histogram.", (0.1, 1))
    metrics.inc("t_total", 2, route='/v1/"x"')
    metrics.observe("t_seconds", 0.5, route="/a")
    text = metrics.render()
    assert '# TYPE t_total counter\nt_total{route="/v1/\\"x\\""} 2\n' in text
    assert "# TYPE t_depth gauge\nt_depth 3\n" in text
    assert 't_seconds_bucket{route="/a",le="0.1"} 0\n' in text
    assert 't_seconds_bucket{route="/a",le="1"} 1\n' in text
    assert 't_seconds_bucket{route="/a",le="+Inf"} 1\n' in text
    assert 't_seconds_count{route="/a"} 1\n' in text


def test_the_store_keeps_jobs_and_finished_segments_across_connections(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    store.create("j1", {"filename": "a.flac"}, str(tmp_path / "a.upload"), 12.5, created_at=1.0)
    result = SegmentResult(3, (TextSegment(1.0, 2.0, "héllo"),), language="en", tokens=(1, 2))
    store.record("j1", [FinishedSegment(3, 0.5, 2.5, result)], state="running", audio_done_s=2.5)
    store.close()

    again = JobStore(tmp_path / "jobs.db")
    [record] = again.unfinished()
    assert (record.id, record.state, record.audio_done_s, record.options) == ("j1", "running", 2.5, {"filename": "a.flac"})
    assert again.segments("j1") == [FinishedSegment(3, 0.5, 2.5, result)]
    again.update("j1", state="cancelled")
    again.record("j1", [], state="running", audio_done_s=9.0)  # a batch finishing after the cancel
    assert again.unfinished() == [] and again.get("j1").state == "cancelled"
    with pytest.raises(ValueError):
        again.update("j1", **{"state = 'x'; --": 1})


@pytest.mark.parametrize("sent, shown", [
    ("/etc/passwd", "passwd"), ("..\\..\\secret.wav", "secret.wav"), ("", "audio"), (None, "audio"),
    ("talk.flac", "talk.flac"),
])
def test_a_client_file_name_is_reduced_to_its_last_component(sent, shown):
    assert _display_name(sent) == shown


def test_serve_options_take_keys_from_flags_and_the_environment(monkeypatch, tmp_path):
    from tingxie.cli.main import build_parser
    from tingxie.server.command import config_from_args
    from tingxie.server.config import keys_from_env

    assert keys_from_env({"TINGXIE_API_KEYS": "a, b\nc"}) == ("a", "b", "c")
    monkeypatch.setenv("TINGXIE_API_KEYS", "env-key")
    args = build_parser().parse_args(["serve", "--api-key", "flag-key", "--db", str(tmp_path / "j.db"),
                                      "--max-upload-mb", "2", "--no-cross-batching"])
    config = config_from_args(args)
    assert config.api_keys == ("flag-key", "env-key") and args.host == "127.0.0.1" and args.port == 8000
    assert config.max_upload_bytes == 2 * 2**20 and config.max_active == 1
    assert config.uploads == tmp_path / "uploads"
