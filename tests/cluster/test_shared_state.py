"""State two front-ends share through PostgreSQL: endpoint scores (the reducer) and the
verified-certificate cache (docs/cluster.md, State shared by front-ends).

The in-process tests freeze the clock, so a cache's TTL never runs out: only another
front-end's NOTIFY can make it show the change.
"""

from __future__ import annotations

import gzip
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from appliance.core.config import Config
from appliance.core.errors import Forbidden
from appliance.security.pki import PeerIdentity
from appliance.services.identity import Identity
from appliance.services.scoring import SharedReducer
from appliance.store import CertRecord, Endpoint, EndpointStatus
from appliance.store.postgres import ClusterStore
from tests.cluster.servers import ClickHouse, Postgres, fresh_database
from tests.cluster.test_frontends import Agent, two_frontends
from tests.e2e.harness import WAIT_LIMIT, ManagerProc, wait_for
from tests.support.events import detection, gene_event

NOW = 1_000_000.0


@pytest.fixture
def fronts(pg_server: Postgres) -> Iterator[tuple[ClusterStore, ClusterStore]]:
    a, b = ClusterStore(pg_server.dsn), ClusterStore(pg_server.dsn)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _identity(store: ClusterStore) -> Identity:
    return Identity(store=store, pki=None, config=Config(), clock=lambda: NOW)


def test_verified_certificates_follow_other_front_ends(
    fronts: tuple[ClusterStore, ClusterStore],
) -> None:
    a, b = fronts
    on_a, on_b = _identity(a), _identity(b)
    ep = uuid.uuid4().hex
    a.endpoints.create(Endpoint(ep, "WS-1", group="lab", status=EndpointStatus.ACTIVE, created=1))
    old = PeerIdentity(ep, uuid.uuid4().hex, "sha-old", NOW + 86400)
    a.certs.add(CertRecord(old.serial, ep, old.sha256, NOW - 10, old.not_after))
    assert on_b.endpoint_for(old).group == "lab"  # cached by B (the clock never moves)
    a.endpoints.update(ep, group="dmz")  # an admin on A moves it
    wait_for(lambda: on_b.endpoint_for(old).group == "dmz", WAIT_LIMIT, "B to see the group")
    # Re-enrollment on A: a new certificate, the record updated (Identity.enroll's writes).
    new = PeerIdentity(ep, uuid.uuid4().hex, "sha-new", NOW + 86400)
    assert on_b.endpoint_for(old).hostname == "WS-1"
    a.endpoints.update(ep, hostname="WS-1-reimaged", status=EndpointStatus.ACTIVE)
    a.certs.add(CertRecord(new.serial, ep, new.sha256, NOW, new.not_after))
    wait_for(
        lambda: on_b.endpoint_for(new).hostname == on_b.endpoint_for(old).hostname,
        WAIT_LIMIT,
        "B to drop the old record",
    )
    assert on_b.endpoint_for(old).hostname == "WS-1-reimaged"
    # Deleted on A (no revocation): B refuses it although it had it cached.
    on_a.endpoint_for(new)
    a.endpoints.delete(ep)

    def refused() -> bool:
        try:
            on_b.endpoint_for(new)
        except Forbidden:
            return True
        return False

    wait_for(refused, WAIT_LIMIT, "B to refuse the deleted endpoint")


def test_scores_merge_across_front_ends(fronts: tuple[ClusterStore, ClusterStore]) -> None:
    a, b = fronts
    on_a, on_b = SharedReducer(a.reports, a.changes), SharedReducer(b.reports, b.changes)
    ep, other = uuid.uuid4().hex, uuid.uuid4().hex
    on_a.update(ep, 10.0, ["SigA"], 5, [{"ID": "T1059", "Tactic": "execution"}])
    on_a.commit(ep, a.reports, NOW)
    on_b.update(ep, 20.0, ["SigB"], 9)
    on_b.update(other, 30.0, ["SigC"], 2)
    on_b.commit(ep, b.reports, NOW)
    on_b.commit(other, b.reports, NOW)

    def both(uuid_: str) -> list[dict[str, Any] | None]:
        return [on_a.report(uuid_), on_b.report(uuid_)]

    wait_for(lambda: all(r and r["alert-count"] == 2 for r in both(ep)), WAIT_LIMIT, "both see 2")
    for report in both(ep):
        assert report is not None
        assert report["count-by-signature"] == {"SigA": 1, "SigB": 1}
        assert report["techniques"] == ["T1059"] and report["tactics"] == ["execution"]
        assert report["start-time"] < report["stop-time"]
        assert report["bounded-score"] == 100.0
    wait_for(lambda: on_a.bounded(other) > 0, WAIT_LIMIT, "A to see B's other endpoint")
    assert on_a.bounded(other) == on_b.bounded(other) < 100

    # Concurrent batches on both front-ends: every detection counted once.
    def burst(reducer: SharedReducer, store: ClusterStore, sig: str) -> None:
        for i in range(20):
            reducer.update(ep, 100.0 + i, [sig], 3)
            reducer.commit(ep, store.reports, NOW)

    threads = [
        threading.Thread(target=burst, args=(r, s, f"Burst{i}"))
        for i, (r, s) in enumerate([(on_a, a), (on_b, b), (on_a, a), (on_b, b)])
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wait_for(lambda: all(r and r["alert-count"] == 82 for r in both(ep)), WAIT_LIMIT, "82 alerts")
    # A reset on B: A's copy follows; the archived report is the whole one.
    taken = on_b.reset(ep)
    assert taken is not None and taken["alert-count"] == 82
    wait_for(lambda: on_a.report(ep) is None, WAIT_LIMIT, "A to see the reset")


def _post_detections(agent: Agent, front: ManagerProc, sig: str, n: int, tag: str) -> None:
    events = [
        gene_event(
            1,
            {"CommandLine": f"cmd /c {tag} {i}"},
            computer=agent.name,
            detect=detection([sig], 7),
        )
        for i in range(n)
    ]
    res = agent.session.post(
        f"https://{front.address}/logs",
        data=gzip.compress(b"\n".join(orjson.dumps(e) for e in events)),
        timeout=30,
        headers={
            "Content-Encoding": "gzip",
            "Content-Type": "application/x-ndjson",
            "X-Heron-Batch-Id": f"{tag}-{sig}",
        },
    )
    assert res.status_code == 200, res.text


def _wait_report(front: ManagerProc, path: str, alerts: int) -> Any:
    def seen() -> Any:
        report = front.admin("GET", path)
        return report if report and report["alert-count"] == alerts else None

    return wait_for(seen, WAIT_LIMIT, f"{alerts} alerts on {front.address}")


@pytest.mark.e2e
def test_two_front_ends_report_one_score(
    tmp_path: Path, ch_servers: list[ClickHouse], pg_server: Postgres
) -> None:
    dsn = fresh_database(pg_server)
    a, b, _ = two_frontends(tmp_path, ch_servers, pg_server, ("fe-sa", "fe-sb"), dsn)
    a.start()
    b.start()
    try:
        agent = Agent("score-1", a, b.token(), tmp_path)
        tag = uuid.uuid4().hex[:8]
        _post_detections(agent, a, "SigOnA", 3, tag)
        _post_detections(agent, b, "SigOnB", 2, tag)  # the agent moved to B
        path = f"/endpoints/{agent.uuid}/report"
        for front in (a, b):
            report = _wait_report(front, path, 5)
            assert report["count-by-signature"] == {"SigOnA": 3, "SigOnB": 2}
        taken = b.admin("DELETE", path)
        assert taken["alert-count"] == 5
        wait_for(lambda: a.admin("GET", path) is None, WAIT_LIMIT, "A to see B's reset")
    finally:
        a.stop()
        b.stop()
