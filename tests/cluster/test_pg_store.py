"""The fleet store on PostgreSQL: the embedded store's table code, shared by two front-ends."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from appliance.core.errors import Conflict, StoreError
from appliance.store import CertRecord, CommandRecord, Endpoint, Role, Token, User
from appliance.store.postgres import ClusterStore, translate
from tests.cluster.servers import Postgres, fresh_database
from tests.e2e.harness import wait_for


@pytest.fixture
def fronts(pg_server: Postgres) -> Iterator[tuple[ClusterStore, ClusterStore]]:
    """Two front-ends' fleet stores over the same PostgreSQL."""
    a, b = ClusterStore(pg_server.dsn), ClusterStore(pg_server.dsn)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _id() -> str:
    return uuid.uuid4().hex


def test_dialect_translation() -> None:
    assert (
        translate("SELECT 1 WHERE a = ? AND b LIKE '%x'")
        == "SELECT 1 WHERE a = %s AND b LIKE '%%x'"
    )
    assert translate("INSERT OR REPLACE INTO reports VALUES (?, ?, ?)") == (
        "INSERT INTO reports (endpoint, stats, updated) VALUES (%s, %s, %s) ON CONFLICT "
        "(endpoint) DO UPDATE SET stats = EXCLUDED.stats, updated = EXCLUDED.updated"
    )


def test_presence_touches_land(fronts: tuple[ClusterStore, ClusterStore]) -> None:
    """`touch` (fire and forget) was refused by PostgreSQL (`CAST(? AS DOUBLE)`) unseen until
    `submit` failures surfaced."""
    a, b = fronts
    ep = a.endpoints.create(Endpoint(_id(), hostname="WS-T", ip="10.0.0.9", created=1.0))
    a.endpoints.touch({ep.uuid: (50.0, 40.0, None, "10.0.0.10")})
    seen = b.endpoints.get(ep.uuid)
    assert (seen.last_connection, seen.last_event, seen.ip) == (50.0, 40.0, "10.0.0.10")


def test_endpoints_and_users_are_shared(fronts: tuple[ClusterStore, ClusterStore]) -> None:
    a, b = fronts
    ep = a.endpoints.create(Endpoint(_id(), hostname="WS-1", ip="10.0.0.1", created=1.0))
    assert b.endpoints.get(ep.uuid).hostname == "WS-1"
    b.endpoints.update(ep.uuid, hostname="WS-2", criticality=5)
    assert a.endpoints.get(ep.uuid).hostname == "WS-2"
    assert a.endpoints.get(ep.uuid).criticality == 5
    ident = f"alice-{_id()}"
    a.users.add(User(_id(), ident, Role.ADMIN), key_hash=_id())
    with pytest.raises(Conflict):
        b.users.add(User(_id(), ident, Role.ADMIN), key_hash=_id())


def test_enrollment_token_is_consumed_once_across_front_ends(
    fronts: tuple[ClusterStore, ClusterStore],
) -> None:
    a, b = fronts
    tokens = [_id() for _ in range(10)]
    for t in tokens:
        a.tokens.add(Token(t, None, "lab", time.time() + 600, None, time.time()))
    won: list[str] = []

    def race(store: ClusterStore) -> None:
        for t in tokens:
            if store.tokens.consume(t, time.time()) is not None:
                won.append(t)

    threads = [threading.Thread(target=race, args=(s,)) for s in (a, b, a, b)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(won) == sorted(tokens)


def test_commands_are_delivered_once_whichever_front_end_polls(
    fronts: tuple[ClusterStore, ClusterStore],
) -> None:
    a, b = fronts
    endpoint = _id()
    queued = [
        a.commands.add(CommandRecord(_id(), endpoint, "hostname", created=float(i)))
        for i in range(30)
    ]
    delivered: list[str] = []

    def poll(store: ClusterStore) -> None:
        while (cmd := store.commands.next_for(endpoint, time.time())) is not None:
            delivered.append(cmd.id)

    threads = [threading.Thread(target=poll, args=(s,)) for s in (a, b, a, b)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(delivered) == sorted(c.id for c in queued)
    assert b.commands.complete(endpoint, queued[0].id, {"ok": True}, time.time())
    assert not a.commands.complete(endpoint, queued[0].id, {"ok": True}, time.time())
    assert a.commands.get(queued[0].id).result == {"ok": True}


def test_revocation_on_one_front_end_takes_effect_on_the_other(
    fronts: tuple[ClusterStore, ClusterStore],
) -> None:
    a, b = fronts
    serial, ep = _id(), _id()
    a.certs.add(CertRecord(serial, ep, "00" * 32, 0.0, 2e9))
    assert not b.certs.is_revoked(serial)  # B has now cached the revoked set
    assert a.certs.revoke(uuid=ep, now=time.time()) == 1
    deadline = time.monotonic() + 30
    while not b.certs.is_revoked(serial):
        assert time.monotonic() < deadline, "B never saw the revocation"
        time.sleep(0.02)


def test_upserts_deletes_and_errors(fronts: tuple[ClusterStore, ClusterStore]) -> None:
    a, b = fronts
    key = f"k-{_id()}"
    a.settings.put(key, {"v": 1}, 1.0)
    b.settings.put(key, {"v": 2}, 2.0)
    assert a.settings.get(key) == {"v": 2}
    a.documents.put("misp", key, "body", "00", 1.0)
    assert b.documents.get("misp", key) is not None
    assert b.documents.delete("misp", key)
    assert a.documents.get("misp", key) is None
    ep = _id()
    a.detections.add_many([(ep, 1.0, 1.0, "h", ["Sig"], 5, None)])
    assert b.detections.prune(before=2.0) >= 1
    with pytest.raises(StoreError):
        a.db.query("SELECT nope FROM endpoints")


def _rule(name: str) -> dict[str, object]:
    return {
        "Name": name,
        "Meta": {
            "Events": {"Microsoft-Windows-Sysmon/Operational": [1]},
            "Criticality": 5,
            "Schema": "2.0.0",
        },
        "Matches": ["$a: Image ~= 'x'"],
        "Condition": "$a",
    }


def test_rules_and_iocs_cached_by_one_front_end_follow_the_others_writes(
    fronts: tuple[ClusterStore, ClusterStore],
) -> None:
    from appliance.services.content import Content
    from rules import wire

    a, b = fronts
    content_a, content_b = Content(a, time.time), Content(b, time.time)
    before = content_b.rules_text()[1]  # B serves (and caches) the rules as they are
    content_a.put_rules([_rule("Added" + _id()[:8])], update=True)
    wait_for(lambda: content_b.rules_text()[1] != before, 30, "B to serve the new rules")
    assert content_b.rules_text() == content_a.rules_text()
    iocs_before = content_b.iocs()[1]
    a.iocs.upsert(
        [wire.Ioc("evil.example", "domain", str(uuid.uuid4()), str(uuid.uuid4()), "t")], 1.0
    )
    wait_for(lambda: content_b.iocs()[1] != iocs_before, 30, "B to serve the new IoC")
    assert content_b.iocs() == content_a.iocs()


def test_update_hashes_cached_by_one_front_end_follow_the_others_writes(
    fronts: tuple[ClusterStore, ClusterStore],
) -> None:
    from appliance.services.content import Content
    from rules import wire

    a, b = fronts
    content_a, content_b = Content(a, time.time), Content(b, time.time)
    ep = "ep-" + _id()
    a.endpoints.create(Endpoint(ep))
    before = content_b.update_hashes(ep, "windows")  # B caches every part
    a.endpoints.update(ep, config={"k": _id()})
    content_a.put_sysmon("windows", "99." + str(int(time.time())), '<Sysmon v="' + _id() + '"/>')
    a.tools.put("tool-" + _id()[:8], "windows", _id().encode(), 1.0)

    def changed() -> bool:
        now = content_b.update_hashes(ep, "windows")
        return all(now[k] != before[k] for k in ("config", "sysmon", "tools"))

    wait_for(changed, 30, "B to answer /updates with A's new config, Sysmon config and tool")
    assert content_b.update_hashes(ep, "windows") == content_a.update_hashes(ep, "windows")
    assert content_b.update_hashes(ep, "windows")["config"] == wire.config_sha256(
        a.endpoints.get(ep).config or {}
    )


def _detection(event_hash: str, criticality: int = 5) -> tuple[Any, ...]:
    return ("ep-1", 1.0, 2.0, event_hash, ["Sig"], criticality, None)


def test_a_failed_detection_insert_is_logged_counted_and_raised(
    pg_server: Postgres, caplog: pytest.LogCaptureFixture
) -> None:
    """Detections are written without waiting (`submit`): a failure must not vanish."""
    dsn = fresh_database(pg_server)
    with ClusterStore(dsn) as store:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("ALTER TABLE detections ADD CONSTRAINT sane CHECK (criticality <= 10)")
        with (
            caplog.at_level(logging.ERROR, logger="appliance.store.postgres"),
            pytest.raises(StoreError, match="sane"),
        ):
            store.detections.add_many([_detection("h-1", criticality=99)])
        assert store.db.failed_writes == 1
        assert "PostgreSQL write failed" in caplog.text
        assert store.detections.count() == 0


def test_writes_and_reads_survive_a_lost_connection(pg_server: Postgres) -> None:
    """PostgreSQL ended the front-end's sessions (restart, failover, a network cut): the next
    write and read reconnect instead of failing (a detection was lost silently before)."""
    dsn = fresh_database(pg_server)
    with ClusterStore(dsn) as store:
        store.detections.add_many([_detection("h-1")])
        assert store.detections.count() == 1
        with psycopg.connect(dsn, autocommit=True) as admin:
            pids = [
                r[0]
                for r in admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                ).fetchall()
            ]
            for pid in pids:
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])

            def ended() -> bool:
                row = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [pids]
                ).fetchone()
                return row is not None and row[0] == 0

            wait_for(ended, 30, "the sessions to end")
        store.detections.add_many([_detection("h-2")])
        assert store.detections.count() == 2
        assert store.db.failed_writes == 0
