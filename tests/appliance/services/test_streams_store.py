"""SSE hub (filters, caps, slow consumers), fleet store (writer thread, errors), metrics."""

from __future__ import annotations

import os
import threading

import orjson
import pytest

from appliance.core.errors import ClosedError, Conflict, StoreError, Unavailable
from appliance.services.streams import ByteSubscription, StreamFilter, StreamHub
from appliance.store import Role, Store, User
from tests.appliance.conftest import Env, event
from tests.support.waiting import wait_for


def _det(uuid: str, sig: str, crit: int, eid: int = 1) -> dict:
    ev = event(0, signature=sig, crit=crit, eid=eid)
    ev["Event"]["EdrData"] = {"Endpoint": {"UUID": uuid}}
    return ev


def test_filters() -> None:
    ev = _det("u1", "Mimikatz", 8, eid=10)
    assert StreamFilter(detections_only=True).matches(ev)
    assert not StreamFilter(detections_only=True).matches(event(1))
    assert StreamFilter(endpoint="u1", event_id=10, min_criticality=8).matches(ev)
    assert not StreamFilter(endpoint="u2").matches(ev)
    assert not StreamFilter(min_criticality=9).matches(ev)
    assert StreamFilter(signature="Mimikatz").matches(ev)
    assert not StreamFilter(signature="Other").matches(ev)
    assert not StreamFilter(channel="Security").matches(ev)
    ev["Event"]["System"]["EventID"] = {"Value": 10, "Qualifiers": 0}
    assert StreamFilter(event_id=10).matches(ev)


def test_cap_and_unsubscribe() -> None:
    hub = StreamHub(max_clients=2)
    a = hub.subscribe(StreamFilter())
    hub.subscribe(StreamFilter())
    with pytest.raises(Unavailable):
        hub.subscribe(StreamFilter())
    hub.unsubscribe(a)
    hub.subscribe(StreamFilter())
    assert hub.clients == 2


def test_slow_consumer_never_blocks_publish_and_drops_oldest() -> None:
    hub = StreamHub(queue=10)
    sub = hub.subscribe(StreamFilter())
    for i in range(1000):  # nobody reads `sub`: a publish that waited for it would never return
        hub.publish([event(i)])
    assert len(sub.queue) == 10 and sub.dropped == 990
    body = hub.sse(sub, max_events=10)
    assert next(body) == b": heron stream\n\n"
    frames = list(body)
    notice, frames = frames[0], frames[1:]
    assert notice.startswith(b"event: heron\ndata: ")  # not an event: onmessage skips it
    assert orjson.loads(notice.split(b"data: ")[1])["Heron"]["Dropped"] == 990
    assert len(frames) == 10 and b"cmd999.exe" in frames[-1]
    assert frames[0].startswith(b"id: 991\ndata: ")
    assert hub.clients == 0  # the generator unsubscribed when it ended


def test_sse_buffer_is_bounded_in_bytes_and_a_stalled_client_is_closed() -> None:
    """Large events: the SSE buffer holds at most its byte budget (not N events whatever their
    size); a client that lost events and has not read for `stall` s is closed and released."""
    hub = StreamHub(queue=2000, buffer=1 << 20, stall=0.5)
    sub = hub.subscribe(StreamFilter())
    big = event(0, extra={"Blob": "x" * 200_000})
    for _ in range(50):  # 10 MB of events
        hub.publish([big])
        assert sub.size <= 1 << 20
    assert len(sub.queue) == 5 and sub.dropped == 45 and hub.clients == 1
    sub.last_take -= 1.0  # as if the client had not read for a second
    hub.publish([big])
    assert sub.closed and sub.stalled and sub.size == 0 and not sub.queue
    assert hub.clients == 0 and hub.stalled == 1
    assert hub.dropped == 46 + 5  # its losses, and what its buffer held, are counted


def test_byte_subscription_stays_within_its_budget_and_reports_losses() -> None:
    wakes: list[int] = []
    hub = StreamHub()
    sub = ByteSubscription(StreamFilter(), 4096, lambda: wakes.append(1))
    hub.attach(sub)
    assert (hub.clients, hub.ws_clients, hub.subscribers) == (0, 1, 1)
    for i in range(200):
        hub.publish([event(i)])
        assert sub.size <= 4096
    assert len(wakes) == 1  # one wake-up until the reader takes
    items, lost = sub.take(10**9)
    assert lost == sub.dropped == 200 - len(items) and lost > 0
    assert [seq for seq, _ in items] == list(range(201 - len(items), 201))  # newest kept, in order
    assert b"cmd199.exe" in items[-1][1] and sub.size == 0
    hub.publish([event(1000)])
    assert len(wakes) == 2 and sub.take(10**9)[1] == 0  # losses are reported once
    huge = event(1)
    huge["Event"]["EventData"]["Blob"] = "x" * 5000  # larger than the whole budget
    hub.publish([huge])
    assert sub.take(10**9) == ([], 1)
    hub.unsubscribe(sub)
    assert sub.closed and hub.subscribers == 0 and hub.dropped == sub.dropped


def test_byte_subscription_take_is_chunked() -> None:
    sub = ByteSubscription(StreamFilter(), 10**6, lambda: None)
    for i in range(10):
        sub.offer(i, b"x" * 100)
    first, _ = sub.take(250)
    assert [seq for seq, _ in first] == [0, 1]
    assert [seq for seq, _ in sub.take(50)[0]] == [2]  # at least one, even above max_bytes
    assert len(sub.take(10**6)[0]) == 7


def test_heartbeat_when_idle() -> None:
    waits = []

    def fake_wait(ev: threading.Event, timeout: float) -> bool:
        waits.append(timeout)
        return False

    hub = StreamHub(heartbeat=15.0, wait=fake_wait)
    sub = hub.subscribe(StreamFilter())
    body = hub.sse(sub)
    next(body)
    assert next(body) == b": hb\n\n" and waits == [15.0]
    body.close()
    assert hub.clients == 0


def test_stream_route_over_admin_api(env: Env) -> None:
    agent = env.enroll()
    env.ctx.config  # noqa: B018
    res_holder = {}

    def consume() -> None:
        res_holder["res"] = env.a(
            "GET", f"/stream/detections?endpoint={agent.uuid}&min_criticality=5&limit=1"
        )

    thread = threading.Thread(target=consume)
    thread.start()
    wait_for(lambda: env.ctx.hub.clients, 60, "the stream's subscriber")
    env.post_logs(
        agent, [event(1), event(2, signature="Low", crit=2), event(3, signature="High", crit=9)]
    )
    thread.join(5)
    res = res_holder["res"]
    assert res.status_code == 200 and res.headers["content-type"] == "text/event-stream"
    frames = [ln for ln in res.text.split("\n") if ln.startswith("data: ")]
    assert len(frames) == 1 and '"High"' in frames[0]
    assert env.a("GET", "/stream/events?event_id=abc").status_code == 400


def test_stream_cap_is_503(env: Env) -> None:
    for _ in range(env.ctx.hub.max_clients):
        env.ctx.hub.subscribe(StreamFilter())
    assert env.a("GET", "/stream/events").status_code == 503


def test_event_listeners_receive_durable_batches(env: Env) -> None:
    seen = []
    env.ctx.event_listeners.append(lambda ep, evs: seen.append((ep.uuid, len(evs), evs[0])))

    def broken(ep, evs) -> None:
        raise RuntimeError("plugin bug")

    env.ctx.event_listeners.insert(0, broken)
    agent = env.enroll()
    env.post_logs(agent, [event(1), event(2)], batch_id="l1")
    env.post_logs(agent, [event(1), event(2)], batch_id="l1")  # duplicate: not re-delivered
    env.ctx.ingest.dispatcher.join()
    assert [(u, n) for u, n, _ in seen] == [(agent.uuid, 2)]
    assert seen[0][2]["Event"]["EdrData"]["Endpoint"]["UUID"] == agent.uuid


def test_store_writer_batches_and_isolates_failures() -> None:
    with Store() as store:
        store.users.add(User("u1", "alice", Role.ADMIN), "h1")
        futures = [
            store.db.submit(
                lambda cur, i=i: cur.execute("INSERT INTO settings VALUES (?, '1', 0)", [f"k{i}"])
            )
            for i in range(50)
        ]
        bad = store.db.submit(lambda cur: cur.execute("INSERT INTO nope VALUES (1)"))
        for f in futures:
            f.result()
        with pytest.raises(StoreError, match="nope"):
            bad.result()
        assert store.db.failed_writes == 1  # heron_store_write_failures_total
        assert len(store.settings.all()) == 50
        with pytest.raises(Conflict):
            store.users.add(User("u2", "alice", Role.ADMIN), "h2")
    with pytest.raises(ClosedError):
        store.users.list()
    store.close()  # idempotent


def test_every_duckdb_error_becomes_store_error() -> None:
    import duckdb

    with Store() as store:
        for sql in ("SELEC 1", "SELECT * FROM missing", "SELECT 1/'x'"):
            with pytest.raises(StoreError):
                store.db.query(sql)
        assert issubclass(StoreError, Exception) and not issubclass(StoreError, duckdb.Error)


def test_metrics_exposition(env: Env) -> None:
    agent = env.enroll()
    env.post_logs(agent, [event(i) for i in range(7)])
    env.ctx.ingest.flush_presence()
    env.ctx.store.db.write(lambda cur: None)  # presence is written asynchronously
    text = env.a("GET", "/metrics").text
    assert "# TYPE heron_events_received_total counter" in text
    assert "heron_events_received_total 7" in text
    assert "heron_endpoints_online 1" in text
    assert "heron_misp_queue 0" in text
    assert "heron_index_healthy 1" in text
    assert "heron_index_backlog_events " in text
    assert env.a("GET", "/metrics", key=env.analyst_key).status_code == 200
    assert env.admin.simulate_get("/metrics").status_code == 401


def test_healthz_reports_a_failed_event_index(env: Env) -> None:
    body = env.e("GET", "/healthz", None).json
    assert body["status"] == "ok" and body["index"] == {"backlog": 0, "ok": True}
    env.ctx.events.writer.defer_repair(60)  # the failure stays visible while we look
    env.ctx.events.writer.fail("StoreError: Tantivy commit failed: /data/x: disk full")
    res = env.e("GET", "/healthz", None)
    assert res.status_code == 200  # events are still accepted durably
    assert res.json["status"] == "degraded" and res.json["index"]["ok"] is False
    assert "disk full" not in res.text  # no credentials needed: no error text, no paths
    assert "heron_index_healthy 0" in env.a("GET", "/metrics").text
    stats = env.a("GET", "/stats").json["data"]["event-index"]
    assert "disk full" in stats["error"] and stats["writer-pid"] == os.getpid()


def test_every_index_error_is_mapped() -> None:
    import index
    from appliance.services.index_errors import INDEX_ERRORS, index_errors

    exported = {getattr(index, n) for n in index.__all__ if n.endswith("Error")}
    assert exported <= {cls for cls, _ in INDEX_ERRORS}
    for cls, mapped in INDEX_ERRORS:
        with pytest.raises(mapped, match="doing x"):
            with index_errors("doing x"):
                raise (cls("boom", position=0) if cls is index.InvalidEventError else cls("boom"))


def test_reducer_memory_is_bounded_and_scores_are_relative() -> None:
    from appliance.services.scoring import KEEP, Reducer

    reducer = Reducer()
    for i in range(5 * KEEP):
        reducer.update("a", float(i), [f"Sig{i % 3}"], 8)
    reducer.update("b", 1.0, ["Other"], 2)
    state = reducer.states({"a"})["a"]
    assert len(state["times"]) == KEEP and len(state["alert_crits"]) == KEEP
    report = reducer.report("a")
    assert report is not None and report["alert-count"] == 5 * KEEP
    assert report["count-uniq-signatures"] == 3 and report["bounded-score"] == 100.0
    assert 0 < reducer.bounded("b") < 100
    restored = Reducer(reducer.states())
    assert restored.report("a")["alert-count"] == 5 * KEEP  # type: ignore[index]


def test_listeners_can_opt_out_with_wants_events(env: Env) -> None:
    class Plugin:
        enabled = False
        seen: list[int] = []

        def wants_events(self) -> bool:
            return self.enabled

        def on_events(self, ep, evs) -> None:
            self.seen.append(len(evs))

    plugin = Plugin()
    env.ctx.event_listeners.append(plugin.on_events)
    agent = env.enroll()
    env.post_logs(agent, [event(1)])
    env.ctx.ingest.dispatcher.join()
    assert plugin.seen == []
    plugin.enabled = True
    env.post_logs(agent, [event(1), event(2)])
    env.ctx.ingest.dispatcher.join()
    assert plugin.seen == [2]


def test_presence_of_many_endpoints_is_one_batched_write() -> None:
    from appliance.store import Endpoint

    with Store(":memory:") as store:
        for i in range(1200):
            store.endpoints.create(Endpoint(f"u{i}", ip="10.0.0.1", last_event=5.0))
        seen = {
            f"u{i}": (100.0 + i, None, 7.0 if i % 2 else None, "" if i % 3 else "10.9.9.9")
            for i in range(1200)
        }
        seen["unknown"] = (1.0, None, None, "1.1.1.1")
        store.endpoints.touch(seen)
        store.db.write(lambda cur: None)  # after the queued touch
        for i in (0, 1, 2, 3, 599, 1199):
            ep = store.endpoints.get(f"u{i}")
            assert ep.last_connection == 100.0 + i and ep.last_event == 5.0
            assert ep.last_detection == (7.0 if i % 2 else None)
            assert ep.ip == ("10.0.0.1" if i % 3 else "10.9.9.9")
        assert store.endpoints.find("unknown") is None
