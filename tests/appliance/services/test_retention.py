"""[retention]: age and size retention on a real EventStore, the periodic worker, the route."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from appliance.core.config import Config, RetentionConfig, load_config, render_toml
from appliance.core.errors import ConfigError
from appliance.runtime.context import build_context
from appliance.security.pki import Pki
from appliance.services.retention import (
    Retention,
    RetentionWorker,
    start_retention_worker,
)
from appliance.store import Store
from index import EndpointRef, EventStore
from tests.appliance.conftest import NOW, Env
from tests.support.clock import Clock
from tests.support.events import gene_event
from tests.support.memory_store import MemoryEventStore
from tests.support.waiting import wait_for

DAY = 86400.0
EP = EndpointRef("6f1d2c3b-0000-4000-8000-000000000001", hostname="host-1")


def _events(tag: str, n: int, *, pad: int = 0) -> list[dict[str, Any]]:
    return [
        gene_event(
            1,
            {
                "Image": f"C:\\Windows\\System32\\{tag}.exe",
                "CommandLine": f"{tag} run {i} " + "x" * pad,
            },
            computer="HOST-1",
            time="2026-05-28T12:00:00.000000000Z",
        )
        for i in range(n)
    ]


@pytest.fixture
def store_clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def events(tmp_path: Path, store_clock: Clock) -> Iterator[EventStore]:
    store = EventStore(
        tmp_path / "events",
        clock=store_clock,
        commit_interval=0.1,
        fsync=False,
        journal_segment_bytes=16 * 1024,
    )
    yield store
    store.close()


def _total(store: EventStore, query: str = "") -> int:
    store.flush()
    return int(store.search(query, limit=1).total)


# -- configuration ------------------------------------------------------------------------


def test_retention_section_defaults_and_validation(tmp_path: Path) -> None:
    cfg = Config().retention
    assert (cfg.max_age_days, cfg.max_bytes, cfg.interval, cfg.merge) == (90, 0, 3600.0, True)
    assert "[retention]" in render_toml() and "max_age_days = 90" in render_toml()
    path = tmp_path / "config.toml"
    path.write_text(
        "[retention]\nmax_age_days = 7\nmax_bytes = 1000000\ninterval = 60\nmerge = false\n"
    )
    loaded = load_config(path).retention
    assert loaded == RetentionConfig(
        max_age_days=7, max_bytes=1_000_000, interval=60.0, merge=False
    )
    for text, match in [
        ("[retention]\nmax_days = 1\n", "unknown key at retention.max_days"),
        ("[retention]\nmax_age_days = -1\n", "max_age_days"),
        ("[retention]\nmax_age_days = 1.5\n", "max_age_days"),
        ("[retention]\nmerge = 1\n", "merge"),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_config(path)


# -- one pass over a real EventStore ------------------------------------------------------


def test_age_retention_drops_old_events_keeps_new_ones_searchable(
    events: EventStore, store_clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = Store(":memory:")
    try:
        events.append(_events("alphaold", 30), endpoint=EP, batch_id="old-1")
        fleet.detections.add_many(
            [(EP.uuid, store_clock.now, store_clock.now, "h1", ["s"], 5, None)]
        )
        store_clock.now += 100 * DAY
        events.append(_events("betanew", 20), endpoint=EP, batch_id="new-1")
        fleet.detections.add_many(
            [(EP.uuid, store_clock.now, store_clock.now, "h2", ["s"], 5, None)]
        )
        assert _total(events) == 50
        retention = Retention(
            events=events,
            detections=fleet.detections,
            config=RetentionConfig(max_age_days=90),
            clock=store_clock,
        )
        with caplog.at_level(logging.INFO, logger="appliance.services.retention"):
            result = retention.run_once()
        assert result is not None
        assert result.events_removed == 30 and result.min_seq == 31
        assert result.detections_removed == 1 and fleet.detections.count() == 1
        assert result.segments is not None and result.segments >= 1
        assert any("retention: removed 30 events" in r.getMessage() for r in caplog.records)
        assert _total(events) == 20
        assert _total(events, "alphaold") == 0
        assert _total(events, "betanew") == 20
        assert _total(events, 'CommandLine:"betanew run 7"') == 1
        assert events.sql("SELECT count(*) FROM events").rows[0][0] == 20
        # nothing more is old: a second pass removes nothing, new events still arrive
        again = retention.run_once()
        assert again is not None and again.events_removed == 0
        events.append(_events("gammalater", 5), endpoint=EP, batch_id="new-2")
        assert _total(events, "gammalater") == 5
    finally:
        fleet.close()


def test_size_retention_drops_the_oldest_until_under_the_cap(
    events: EventStore, store_clock: Clock
) -> None:
    for i in range(8):
        events.append(_events(f"batch{i}", 40, pad=400), endpoint=EP, batch_id=f"b{i}")
        store_clock.now += 60
    events.flush()
    events.merge_segments()
    used = events.disk_usage()["total"]
    retention = Retention(
        events=events,
        detections=None,
        clock=store_clock,
        config=RetentionConfig(max_age_days=0, max_bytes=used // 2),
    )
    result = retention.run_once()
    assert result is not None and result.events_removed is not None
    assert 0 < result.events_removed < 320
    assert result.bytes_before == used and result.bytes_after is not None
    assert _total(events) == 320 - result.events_removed
    assert _total(events, "batch0") == 0  # the oldest went first
    assert _total(events, "batch7") == 40  # the newest are all kept and searchable
    assert _total(events, 'CommandLine:"batch7 run 39"') == 1

    # The files do not shrink after deletes: the same cap with no new events removes nothing.
    kept = _total(events)
    for _ in range(2):
        again = retention.run_once()
        assert again is not None and again.events_removed == 0
        assert _total(events) == kept
    # New events beyond the cap push the oldest out (and the newest stay).
    oldest = next(i for i in range(8) if _total(events, f"batch{i}") > 0)
    in_oldest = _total(events, f"batch{oldest}")
    for i in range(8, 12):
        events.append(_events(f"batch{i}", 40, pad=400), endpoint=EP, batch_id=f"b{i}")
        store_clock.now += 60
    grown = retention.run_once()
    assert grown is not None and grown.events_removed is not None
    assert grown.events_removed > 0
    assert _total(events) == kept + 160 - grown.events_removed
    assert _total(events, "batch11") == 40
    assert _total(events, f"batch{oldest}") < in_oldest  # the oldest kept went first


def test_zero_limits_keep_everything(events: EventStore, store_clock: Clock) -> None:
    events.append(_events("keepme", 10), endpoint=EP, batch_id="k")
    store_clock.now += 10_000 * DAY
    retention = Retention(
        events=events,
        detections=None,
        clock=store_clock,
        config=RetentionConfig(max_age_days=0, max_bytes=0, merge=False),
    )
    result = retention.run_once()
    assert result is not None
    assert result.events_removed == 0 and result.segments is None
    assert _total(events, "keepme") == 10


def test_the_pass_merges_without_waiting_for_merges_in_flight(
    events: EventStore, store_clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting for a merge of the largest segments stopped indexing for as long as it ran."""
    calls: list[bool] = []
    merge = events.merge_segments

    def recorded(*, wait: bool = True) -> int:
        calls.append(wait)
        return merge(wait=wait)

    monkeypatch.setattr(events, "merge_segments", recorded)
    events.append(_events("m", 10), endpoint=EP, batch_id="m")
    retention = Retention(
        events=events, detections=None, clock=store_clock, config=RetentionConfig()
    )
    result = retention.run_once()
    assert result is not None and result.segments is not None and result.segments >= 1
    assert calls == [False]
    assert _total(events, "m") == 10


def test_memory_event_store_only_prunes_fleet_detections(store_clock: Clock) -> None:
    fleet = Store(":memory:")
    try:
        fleet.detections.add_many([(EP.uuid, 0.0, store_clock.now - 91 * DAY, "h", ["s"], 1, None)])
        retention = Retention(
            events=MemoryEventStore(),
            detections=fleet.detections,
            config=RetentionConfig(),
            clock=store_clock,
        )
        result = retention.run_once()
        assert result is not None
        assert result.events_removed is None and result.segments is None
        assert result.detections_removed == 1
    finally:
        fleet.close()


# -- the periodic worker ------------------------------------------------------------------


class _Counting:
    """Stands in for Retention: counts passes, optionally fails."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail
        self.ran = threading.Event()

    def run_once(self, *, blocking: bool = True) -> None:
        self.calls += 1
        self.ran.set()
        if self.fail:
            raise RuntimeError("boom")


def _settle(predicate: Any, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def _ticks(clock: Clock) -> None:
    """Until the worker has read the clock 3 more times: one full loop saw the current time."""
    seen = clock.reads
    wait_for(lambda: clock.reads >= seen + 3, 30, "the retention worker to look at the clock")


def test_worker_runs_on_its_interval_and_stops_cleanly() -> None:
    clock = Clock(NOW)
    job = _Counting()
    worker = RetentionWorker(job, interval=3600.0, clock=clock, tick=0.01)  # type: ignore[arg-type]
    assert worker.first_delay == 300.0
    worker.start()
    try:
        assert worker.alive and worker._thread is not None
        assert worker._thread.daemon and worker._thread.name == "retention"
        _ticks(clock)
        assert job.calls == 0  # first pass is due 300 s (clock) after start
        clock.now += 300
        assert _settle(lambda: job.calls == 1)
        clock.now += 1800
        _ticks(clock)
        assert job.calls == 1  # not yet an interval later
        clock.now += 1800
        assert _settle(lambda: job.calls == 2)
        clock.now += 3600
        assert _settle(lambda: job.calls == 3)
    finally:
        thread = worker._thread
        worker.stop()
    assert thread is not None and not thread.is_alive()  # stop() woke it and joined it
    assert not worker.alive
    clock.now += 10 * 3600  # the thread has exited (not alive): no pass can follow
    assert job.calls == 3
    worker.stop()  # idempotent


def test_worker_survives_a_failing_pass() -> None:
    clock = Clock(NOW)
    job = _Counting(fail=True)
    with RetentionWorker(
        job,
        interval=10.0,
        clock=clock,
        tick=0.01,  # type: ignore[arg-type]
        first_delay=0.0,
    ):
        assert _settle(lambda: job.calls == 1)
        clock.now += 10
        assert _settle(lambda: job.calls == 2)


def test_worker_refuses_a_zero_interval() -> None:
    with pytest.raises(ValueError):
        RetentionWorker(_Counting(), interval=0, clock=Clock(NOW))  # type: ignore[arg-type]


def test_context_worker_lifecycle(tmp_path: Path, pki_dir: Path) -> None:
    clock = Clock(NOW)
    config = replace(Config(), retention=RetentionConfig(interval=120.0))
    ctx = build_context(
        data_dir=tmp_path,
        config=config,
        store=Store(":memory:"),
        pki=Pki(pki_dir, clock=clock),
        clock=clock,
        events=MemoryEventStore(),
    )
    try:
        worker = start_retention_worker(ctx.retention, tick=0.01)
        assert worker is not None and worker.alive
        clock.now += 120
        assert _settle(lambda: ctx.retention.runs == 1)
        assert "heron_retention_runs_total 1" in ctx.metrics.render()
        worker.stop()
        assert not worker.alive
        worker.stop()  # idempotent
    finally:
        ctx.close()
    off = replace(Config(), retention=RetentionConfig(interval=0.0))
    ctx = build_context(
        data_dir=tmp_path,
        config=off,
        store=Store(":memory:"),
        clock=clock,
        events=MemoryEventStore(),
    )
    try:
        assert start_retention_worker(ctx.retention) is None
    finally:
        ctx.close()


# -- POST /maintenance/retention ----------------------------------------------------------


@pytest.fixture
def renv(tmp_path: Path, pki_dir: Path, store_clock: Clock) -> Iterator[Env]:
    """Env over an EventStore that shares the test clock (receipt times can be made old)."""
    events = EventStore(tmp_path / "events", clock=store_clock, commit_interval=0.1, fsync=False)
    config = replace(Config(), retention=RetentionConfig(max_age_days=30))
    ctx = build_context(
        data_dir=tmp_path,
        config=config,
        store=Store(":memory:"),
        pki=Pki(pki_dir, clock=store_clock),
        clock=store_clock,
        events=events,
    )
    yield Env(ctx)
    ctx.close()


def test_admin_route_runs_one_pass(renv: Env, store_clock: Clock) -> None:
    from tests.appliance.conftest import event

    agent = renv.enroll()
    assert renv.post_logs(agent, [event(i, signature="Old") for i in range(5)]).status_code == 200
    store_clock.now += 31 * DAY
    assert renv.post_logs(agent, [event(i) for i in range(100, 103)]).status_code == 200
    res = renv.a("POST", "/maintenance/retention")
    assert res.status_code == 200, res.text
    assert set(res.json) == {"data", "message", "error"} and res.json["message"] == "OK"
    data = res.json["data"]
    assert data["events_removed"] == 5 and data["max_age_days"] == 30
    assert data["detections_removed"] == 5  # the fleet summaries of the old detections
    assert data["segments"] >= 1 and data["started"] == store_clock.now
    assert _total(renv.ctx.events) == 3  # type: ignore[arg-type]
    metrics = renv.a("GET", "/metrics").text
    assert "heron_retention_events_removed_total 5" in metrics
    assert "heron_retention_runs_total 1" in metrics

    def audited() -> bool:  # the audit row goes through the store's writer thread
        audit = renv.a("GET", "/audit").json["data"]
        return any("/maintenance/retention" in str(row) for row in audit)

    wait_for(audited, 10, "the retention pass in the audit log")


def test_admin_route_is_admin_only_and_documented(renv: Env) -> None:
    for key in (renv.analyst_key, renv.plugin_key):
        res = renv.a("POST", "/maintenance/retention", key=key)
        assert res.status_code == 403, res.text
        assert res.json["message"] == "NOK" and res.json["error"]
    assert renv.admin.simulate_post("/maintenance/retention").status_code == 401
    assert renv.ctx.retention.runs == 0
    doc = renv.admin.simulate_get("/openapi.json").json
    assert "post" in doc["paths"]["/maintenance/retention"]


def test_admin_route_conflicts_while_a_pass_runs(renv: Env) -> None:
    retention = renv.ctx.retention
    with retention._lock:
        res = renv.a("POST", "/maintenance/retention")
    assert res.status_code == 409 and "already running" in res.json["error"]
    assert renv.a("POST", "/maintenance/retention").status_code == 200


# -- artifacts: age and per-endpoint quota ----------------------------------------------------


def _upload(env: Env, agent: Any, name: str, data: bytes, ehash: str) -> None:
    import base64
    import hashlib

    chunk = {
        "filename": name,
        "guid": "{11111111-2222-3333-4444-555555555555}",
        "event_hash": ehash,
        "content": base64.b64encode(data).decode(),
        "chunk": 1,
        "total": 1,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert env.e("POST", "/upload/dumps", agent, json=chunk).status_code == 200


def test_artifacts_are_pruned_by_age_then_oldest_first_per_endpoint(env: Env) -> None:
    clock = env.ctx.clock
    noisy, quiet = env.enroll("noisy"), env.enroll("quiet")
    _upload(env, noisy, "ancient.bin", b"a" * 100, "a" * 40)
    clock.now += 40 * DAY  # type: ignore[attr-defined]
    for i in range(5):
        _upload(env, noisy, f"dump{i}.bin", b"n" * 1000, f"{i:x}" * 40)
        clock.now += 60  # type: ignore[attr-defined]
    _upload(env, quiet, "keep.bin", b"q" * 1000, "b" * 40)
    env.ctx.config = replace(
        env.ctx.config,
        retention=replace(
            env.ctx.config.retention, artifact_max_age_days=30, artifact_endpoint_max_bytes=2500
        ),
    )
    result = Retention(
        events=None,
        detections=None,
        config=env.ctx.config.retention,
        clock=clock,
        metrics=env.ctx.metrics,
        artifacts=env.ctx.artifacts,
    ).run_once()
    assert result is not None
    assert result.artifacts_removed == 4 and result.artifact_bytes_removed == 3100
    assert result.artifacts_by_endpoint == {noisy.uuid: {"files": 4, "bytes": 3100}}
    left = {a.filename for a in env.ctx.store.artifacts.list()}
    assert left == {"dump3.bin", "dump4.bin", "keep.bin"}  # the newest kept
    base = env.ctx.data_dir / "artifacts" / noisy.uuid
    assert sorted(p.name for p in base.rglob("*.bin")) == ["dump3.bin", "dump4.bin"]
    assert "heron_retention_artifacts_removed_total 4" in env.ctx.metrics.render()
