"""MISP state in PostgreSQL (docs/cluster.md): two real front-ends, one fake MISP on loopback.

Settings put on one front-end reach the other through `NOTIFY heron_fleet, 'misp'`; the API key
rests in PostgreSQL as a Fernet token; sightings and reports queued on either front-end are
pushed once, by the leader; after a `kill -9` of the leader in the middle of a push the other
front-end takes the queue over and MISP still gets every item once.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from cryptography.fernet import Fernet

from appliance.misp.shared import JOB_REPORTS
from appliance.runtime.leader import lock_key
from tests.appliance.misp.conftest import write_artifacts
from tests.cluster.servers import ClickHouse, Postgres, fresh_database
from tests.cluster.test_frontends import Agent, two_frontends
from tests.e2e.harness import WAIT_LIMIT, ManagerProc, wait_for
from tests.fakemisp import DEFAULT_KEY, FakeMisp
from tests.support.events import gene_event

pytestmark = pytest.mark.e2e

SHA1 = hashlib.sha256(b"heron misp cluster one").hexdigest()
SHA2 = hashlib.sha256(b"heron misp cluster two").hexdigest()


def _scalar(dsn: str, sql: str, params: list[Any] | None = None) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(sql, params or []).fetchone()
        return row[0] if row else None


def _queued(dsn: str, stream: str) -> int:
    return int(_scalar(dsn, "SELECT count(*) FROM misp_queue WHERE stream = %s", [stream]))


def _leader_pid(dsn: str) -> int | None:
    """The backend holding the misp.reports advisory lock in this database."""
    key = lock_key(JOB_REPORTS)
    pid = _scalar(
        dsn,
        "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
        "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database() "
        "AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
        [key],
    )
    return int(pid) if pid is not None else None


def _hash_event(agent: str, sha: str) -> dict[str, Any]:
    data = {"Image": "C:\\x\\dropper.exe", "Hashes": f"SHA256={sha.upper()}"}
    return gene_event(1, data, computer=agent, time="2026-11-28T10:00:00.000000Z")


def _post(agent: Agent, event: dict[str, Any], batch: str) -> None:
    res = agent.session.post(
        f"https://{agent.front.address}/logs",
        data=gzip.compress(orjson.dumps(event)),
        timeout=30,
        headers={
            "Content-Encoding": "gzip",
            "Content-Type": "application/x-ndjson",
            "X-Heron-Batch-Id": batch,
        },
    )
    assert res.status_code == 200, res.text


def _sightings(fake: FakeMisp) -> Counter[str]:
    with fake.lock:
        return Counter(fake.model.attributes[s.attribute_id].value for s in fake.model.sightings)


def _objects(fake: FakeMisp) -> Counter[str]:
    with fake.lock:
        return Counter(o.uuid for o in fake.model.objects.values())


def _key_file(data: Path, key: bytes) -> None:
    """The same `<data>/keys/misp.key` on every front-end (copied, as pki/ is)."""
    folder = data / "keys"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / "misp.key"
    path.write_bytes(key)
    os.chmod(path, 0o400)


def test_misp_state_is_shared_and_pushed_once_by_the_leader(
    tmp_path: Path, ch_servers: list[ClickHouse], pg_server: Postgres
) -> None:
    dsn = fresh_database(pg_server)
    a, b, _ = two_frontends(tmp_path, ch_servers, pg_server, ("fe-ma", "fe-mb"), dsn)
    key = Fernet.generate_key()
    _key_file(a.data, key)
    _key_file(b.data, key)
    artifacts = a.data / "artifacts"
    artifacts.mkdir(exist_ok=True)
    (b.data / "artifacts").symlink_to(artifacts)  # the shared filesystem path
    fake = FakeMisp()
    fake.start()
    with fake.lock:
        ev = fake.model.create_event("cluster IoCs")
        for sha in (SHA1, SHA2):
            fake.model.create_attribute(ev.id, "sha256", sha)
        fake.model.publish(ev.id)
    a.start()
    try:
        wait_for(lambda: _leader_pid(dsn) is not None, WAIT_LIMIT, "A to lead the MISP jobs")
        b.start()
        a.admin(
            "PUT",
            "/misp/settings",
            {
                "enabled": True,
                "url": fake.url,
                "api_key": DEFAULT_KEY,
                "connect_timeout": 2.0,
                "read_timeout": 120.0,  # a held request stays in flight until the kill
                "retry_backoff": 1.0,
                "retry_backoff_max": 2.0,
                "sighting_batch_delay": 3600.0,  # queued hits wait for POST /misp/sync
                "report_since": "2026-11-01",
            },
        )
        # B uses A's settings without a restart (NOTIFY), with the key decrypted.
        wait_for(lambda: b.admin("GET", "/misp/status")["configured"], WAIT_LIMIT, "B configured")
        assert b.admin("GET", "/misp/settings")["url"] == fake.url
        # At rest: a Fernet token in PostgreSQL, never the key.
        doc = json.loads(_scalar(dsn, "SELECT value FROM settings WHERE key = 'misp'"))
        token = doc["api_key_encrypted"]
        assert token and "api_key" not in doc
        assert Fernet(key).decrypt(token.encode()).decode() == DEFAULT_KEY
        for table in ("settings", "misp_state", "misp_queue"):
            assert not _scalar(
                dsn,
                f"SELECT count(*) FROM {table} WHERE position(%s in {table}::text) > 0",
                [DEFAULT_KEY],
            )
        # A (the leader) pulls; B's IoC index follows (NOTIFY), so B's agents' hits match.
        wait_for(
            lambda: b.admin("GET", "/misp/status")["pull"]["iocs"] == 2, WAIT_LIMIT, "B's IoCs"
        )
        agent = Agent("misp-1", b, a.token(), tmp_path)
        _post(agent, _hash_event(agent.name, SHA1), "m1")  # a sighting queued on B
        wait_for(lambda: _queued(dsn, "sightings") == 1, WAIT_LIMIT, "B's sighting queued")
        write_artifacts(artifacts, endpoint=agent.uuid, event_hash="a1" * 20)
        b.admin("POST", "/misp/sync", {})  # B does not lead: nothing is sent from B
        assert _sightings(fake)[SHA1] == 0 and not _objects(fake)
        a.admin("POST", "/misp/sync", {})  # A scans (the report is queued on A) and pushes
        wait_for(
            lambda: _queued(dsn, "sightings") + _queued(dsn, "reports") == 0,
            WAIT_LIMIT,
            "the queues drained",
        )
        assert _sightings(fake)[SHA1] == 1
        assert len(_objects(fake)) == 1

        # kill -9 of the leader while it pushes: its report request is in flight (held by
        # MISP), another report and a sighting wait in the queue.
        held = fake.inject("hold", "/objects/add", times=1)
        write_artifacts(artifacts, endpoint=agent.uuid, event_hash="b2" * 20)
        write_artifacts(artifacts, endpoint=agent.uuid, event_hash="c3" * 20)
        syncing = threading.Thread(target=_sync_quietly, args=(a,), daemon=True)
        syncing.start()
        assert held.arrived.wait(WAIT_LIMIT), "A's report push never reached MISP"
        _post(agent, _hash_event(agent.name, SHA2), "m2")
        wait_for(lambda: _queued(dsn, "sightings") == 1, WAIT_LIMIT, "the second sighting")
        assert _queued(dsn, "reports") == 2
        assert a.proc is not None
        old_leader = _leader_pid(dsn)
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(WAIT_LIMIT)
        a.proc = None
        held.release.set()  # MISP completes the dead leader's request
        wait_for(
            lambda: _leader_pid(dsn) not in (None, old_leader), WAIT_LIMIT, "B to take the lead"
        )

        def drained() -> bool:
            b.admin("POST", "/misp/sync", {})
            return _queued(dsn, "sightings") + _queued(dsn, "reports") == 0

        wait_for(drained, WAIT_LIMIT, "B to drain the queues")
        syncing.join(5)
        assert _sightings(fake) == Counter({SHA1: 1, SHA2: 1})
        objects = _objects(fake)
        assert len(objects) == 3 and set(objects.values()) == {1}, objects
        # the in-flight report was sent again by B and MISP refused the duplicate uuid
        assert len(fake.requests_to("/objects/add")) == 4
        assert b.admin("GET", "/misp/status")["reports"]["dead_letters"] == 0
    finally:
        a.stop()
        b.stop()
        fake.stop()
    assert fake.violations == [], fake.violations


def _sync_quietly(front: ManagerProc) -> None:
    """POST /misp/sync on a front-end that is about to be killed."""
    try:
        front.admin("POST", "/misp/sync", {})
    except (AssertionError, OSError):
        pass
