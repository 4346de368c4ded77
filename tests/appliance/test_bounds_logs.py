"""/logs budgets: events per batch, estimated memory, in-flight budget, over-deep JSON."""

from __future__ import annotations

import gzip
import os
import threading

import pytest

from appliance.core.errors import Unavailable
from appliance.services.budget import MemoryBudget
from rules import wire

from .conftest import Env, event


def _rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _post_raw(env: Env, agent: object, raw: bytes) -> object:
    return env.e(
        "POST",
        wire.ROUTE_LOGS,
        agent,
        body=gzip.compress(raw),  # type: ignore[arg-type]
        headers={"Content-Encoding": "gzip", "Content-Type": wire.CONTENT_NDJSON},
    )


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_500k_empty_events_batch_is_413_without_memory_growth(env: Env) -> None:
    agent = env.enroll()
    raw = b'{"Event":{}}\n' * 500_000
    before = _rss()
    res = _post_raw(env, agent, raw)
    grown = _rss() - before
    assert res.status_code == 413  # type: ignore[attr-defined]
    assert "10000 events per batch" in res.json["error"]  # type: ignore[attr-defined]
    assert grown < 64 * 1024 * 1024, grown  # the issue measured +6.5 GB
    env.ctx.events.flush()  # type: ignore[attr-defined]
    assert list(env.ctx.events.iter_events(endpoint=agent.uuid)) == []


def test_batch_at_the_event_cap_is_accepted(env: Env) -> None:
    agent = env.enroll()
    cap = env.ctx.config.limits.logs_events
    res = _post_raw(env, agent, b'{"Event":{}}\n' * cap)
    assert res.status_code == 200 and res.json["accepted"] == cap  # type: ignore[attr-defined]
    res = _post_raw(env, agent, b'{"Event":{}}\n' * (cap + 1))
    assert res.status_code == 413  # type: ignore[attr-defined]


def test_estimated_memory_cap_names_the_limit(env: Env) -> None:
    agent = env.enroll()
    blob = "A" * 60_000
    raw = b"".join(
        b'{"Event":{"EventData":{"B":"' + blob.encode() + b'"}}}\n' for _ in range(2_500)
    )  # 150 MB decompressed would be over logs_body too: stay under it
    raw = raw[:40_000_000].rsplit(b"\n", 1)[0] + b"\n"  # ~666 events, 40 MB: 120+ MB est.
    limits = env.ctx.config.limits
    assert len(raw) * 3 + 666 * 16384 < limits.logs_batch_memory  # accepted as configured
    from dataclasses import replace

    env.ctx.ingest.limits = replace(limits, logs_batch_memory=64 * 1024 * 1024)
    res = _post_raw(env, agent, raw)
    assert res.status_code == 413  # type: ignore[attr-defined]
    assert "limits.logs_batch_memory" in res.json["error"]  # type: ignore[attr-defined]


def test_over_deep_json_is_400_not_500(env: Env) -> None:
    agent = env.enroll()
    deep = b'{"Event":{"EventData":{"X":' + b"[" * 5000 + b"]" * 5000 + b"}}}\n"
    res = _post_raw(env, agent, deep)
    assert res.status_code == 400 and "nested" in res.json["error"]  # type: ignore[attr-defined]
    mid = b'{"Event":{"EventData":{"X":' + b"[" * 600 + b"]" * 600 + b"}}}\n"
    res = _post_raw(env, agent, mid)
    assert 400 <= res.status_code < 500  # type: ignore[attr-defined]
    assert env.post_logs(agent, [event(1)]).status_code == 200


def test_inflight_budget_waits_then_503_with_retry_after() -> None:
    budget = MemoryBudget(100, wait=0.2, retry_after=7)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with budget.reserve(80):
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    with pytest.raises(Unavailable) as info:
        with budget.reserve(30):
            pass
    assert info.value.retry_after == 7 and budget.refused == 1
    with budget.reserve(20):  # fits beside the holder
        assert budget.used == 100
    release.set()
    t.join(10)
    with budget.reserve(10_000):  # over the limit: capped, runs alone
        assert budget.used == 100
    assert budget.used == 0


def test_inflight_budget_full_answers_503(env: Env) -> None:
    agent = env.enroll()
    budget = env.ctx.ingest.budget
    budget.wait = 0.1
    with budget.reserve(budget.limit):
        res = env.post_logs(agent, [event(1)])
    assert res.status_code == 503 and res.headers["Retry-After"] == "5"
    assert env.post_logs(agent, [event(2)]).status_code == 200


def test_oversized_event_is_stored_cut_with_marker_and_length(env: Env) -> None:
    agent = env.enroll()
    big = "B" * 3_900_000
    small = event(2)
    res = env.post_logs(agent, [event(1, extra={"Blob": big, "Other": "x" * 20_000}), small])
    assert res.status_code == 200 and res.json["accepted"] == 2
    env.ctx.events.flush()  # type: ignore[attr-defined]
    stored = {
        e["Event"]["EventData"]["CommandLine"]: e
        for e in env.ctx.events.iter_events(endpoint=agent.uuid)
    }
    blob = stored["cmd /c 1"]["Event"]["EventData"]["Blob"]
    assert blob.startswith("BBBB") and blob.endswith("[cut by the manager: 3900000 characters]")
    assert len(blob) < 9000
    assert stored["cmd /c 1"]["Event"]["EventData"]["Other"] == "x" * 20_000  # fits now
    assert stored["cmd /c 2"]["Event"]["EventData"] == small["Event"]["EventData"]
    assert env.ctx.metrics.value("heron_event_fields_cut_total") == 1


def test_endpoint_page_of_huge_events_is_byte_capped(env: Env) -> None:
    from appliance.services import hunting

    agent = env.enroll()
    blob = "C" * 200_000  # under event_stored: stored whole
    for i in range(3):
        batch = [event(i * 100 + j, extra={"Blob": blob}) for j in range(100)]
        for j, ev in enumerate(batch):  # distinct times: the cursor is a time boundary
            n = i * 100 + j
            ev["Event"]["System"]["TimeCreated"]["SystemTime"] = (
                f"2026-05-28T1{n // 3600}:{n // 60 % 60:02d}:{n % 60:02d}.000Z"
            )
        assert env.post_logs(agent, batch).status_code == 200
    env.ctx.events.flush()  # type: ignore[attr-defined]
    assert hunting.MAX_PAGE_BYTES == 32 * 1024 * 1024  # 300 events of 200 KB = 60 MB
    res = env.a("GET", f"/endpoints/{agent.uuid}/logs?limit=10000&last=100000h")
    assert res.status_code == 200 and len(res.json["data"]) == 200  # one step past 32 MiB
    assert len(res.text) < 48 * 1024 * 1024
    page = env.a("GET", f"/search?q=&limit=10000&endpoint={agent.uuid}").json["data"]
    assert len(page["events"]) == 200 and page["next_cursor"]
    rest_res = env.a(
        "GET",
        "/search",
        params={"limit": "10000", "endpoint": agent.uuid, "cursor": page["next_cursor"]},
    )
    assert rest_res.status_code == 200, rest_res.text
    rest = rest_res.json["data"]
    assert len(rest["events"]) == 100 and rest["next_cursor"] is None
    seen = {e["Event"]["EventData"]["CommandLine"] for e in page["events"] + rest["events"]}
    assert len(seen) == 300


def test_index_queue_bytes_come_from_the_memory_budget() -> None:
    from appliance.core.config import Config, LimitsConfig

    cfg = Config(limits=LimitsConfig(memory_budget=1 << 30))
    assert cfg.store_options()["queue_bytes"] == (1 << 30) // 8
