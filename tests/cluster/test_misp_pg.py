"""The MISP sync over PostgreSQL (appliance/misp/pgstore.py): two front-ends' MispSyncs over one
database and a fake MISP, without ClickHouse (test_misp_cluster.py runs real front-ends)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.misp import MemoryIocSink, MispSync
from appliance.misp.errors import MispSettingsError
from appliance.misp.instances import MispInstances
from appliance.misp.pgstore import PgCatalog, create_tables, pg_storage
from appliance.misp.service import MispStorage
from appliance.misp.settings import MispSettings
from appliance.store.postgres import ClusterStore
from tests.appliance.misp.conftest import write_artifacts
from tests.cluster.servers import Postgres, fresh_database
from tests.e2e.harness import wait_for
from tests.fakemisp import DEFAULT_KEY, FakeMisp
from tests.support.events import gene_event

SHA = "5d41402abc4b2a76b9719d911017c592aa2b3c4d5e6f708192a3b4c5d6e7f809"
EP = {"uuid": "5a1e8b4c-0000-4000-8000-00000000000b", "hostname": "WS-B"}

Front = tuple[ClusterStore, MispSync]


@pytest.fixture
def fronts(
    pg_server: Postgres, tmp_path: Path
) -> Iterator[tuple[Front, Front, dict[str, bool], FakeMisp]]:
    """Front-ends a and b (a leads until the test says otherwise), over one fresh database."""
    dsn = fresh_database(pg_server)
    leading = {"a": True, "b": False}
    made: list[Front] = []
    with FakeMisp() as fake:

        def front(name: str) -> Front:
            store = ClusterStore(dsn)
            create_tables(store.db)
            storage = pg_storage(store.db, tmp_path / "keys" / "misp.key", name, time.time)
            assert storage.settings is not None
            sync = MispSync(
                storage.settings.load(None),
                storage,
                sink=MemoryIocSink(),
                artifacts_root=tmp_path / "artifacts",
                leads=lambda job: leading[name],
            )
            store.changes.subscribe("misp", sync.reload)
            made.append((store, sync))
            return store, sync

        try:
            yield front("a"), front("b"), leading, fake
        finally:
            for store, sync in made:
                sync.close()
                store.close()


def _settings(fake: FakeMisp) -> dict[str, Any]:
    return {
        "enabled": True,
        "url": fake.url,
        "api_key": DEFAULT_KEY,
        "connect_timeout": 2.0,
        "read_timeout": 10.0,
        "sighting_batch_delay": 0.0,
        "report_since": "2026-11-01",
    }


def _until(check: Callable[[], Any], what: str) -> Any:
    return wait_for(check, 30, what)


def test_settings_and_iocs_follow_the_other_front_end(
    fronts: tuple[Front, Front, dict[str, bool], FakeMisp],
) -> None:
    (_, a), (store_b, b), _, fake = fronts
    assert a.settings.namespace == b.settings.namespace  # started together: one document
    a.update_settings(_settings(fake))
    _until(lambda: b.settings.configured, "b to load a's settings (NOTIFY)")
    assert b.settings.api_key == DEFAULT_KEY and b.settings.url == fake.url
    rows = store_b.db.query("SELECT value FROM settings WHERE key = 'misp'")
    assert DEFAULT_KEY not in rows[0][0] and "api_key_encrypted" in rows[0][0]
    with fake.lock:
        ev = fake.model.create_event("IoCs")
        fake.model.create_attribute(ev.id, "sha256", SHA)
        fake.model.publish(ev.id)
    assert b.pull_iocs() is None  # b does not lead the pull
    a.pull_iocs()
    _until(lambda: b.iocs.ioc_count == 1, "b's IoC index to follow a's pull")


def test_the_leader_alone_drains_what_every_front_end_queued(
    fronts: tuple[Front, Front, dict[str, bool], FakeMisp], tmp_path: Path
) -> None:
    (_, a), (_, b), leading, fake = fronts
    a.update_settings(_settings(fake))
    _until(lambda: b.settings.configured, "b configured")
    with fake.lock:
        ev = fake.model.create_event("IoCs")
        fake.model.create_attribute(ev.id, "sha256", SHA)
        fake.model.publish(ev.id)
    a.pull_iocs()
    _until(lambda: b.iocs.ioc_count == 1, "b's IoC index")
    hit = gene_event(1, {"Hashes": f"SHA256={SHA}"}, time="2026-11-28T07:59:00Z")
    b.on_events(EP, [hit])  # queued on b
    assert len(b.storage.sightings) == len(a.storage.sightings) == 1
    b.run_pending()
    assert b.flush_sightings() is None and fake.requests_to("/sightings/add") == []
    a.run_pending()
    assert len(fake.requests_to("/sightings/add")) == 1 and len(a.storage.sightings) == 0

    write_artifacts(tmp_path / "artifacts", endpoint=EP["uuid"], event_hash="d4" * 20)
    assert b.scan_artifacts() == 0  # only the leader scans
    assert a.scan_artifacts() == 1
    # a stops leading before it pushed: b takes over, reads the state and pushes once
    leading.update(a=False, b=True)
    assert a.push_reports() is None
    result = b.push_reports()
    assert result is not None and result.pushed == 1
    assert b.scan_artifacts() == 0  # b read the ledger: nothing queued twice
    leading.update(a=True, b=False)
    result = a.push_reports()  # a leads again: it read b's ledger, the queue is empty
    assert result is not None and result.pushed == 0 and result.pending == 0
    assert a.scan_artifacts() == 0
    assert len(fake.requests_to("/objects/add")) == 1


def test_lookups_pending_on_a_follower_are_sent_by_the_leader(
    fronts: tuple[Front, Front, dict[str, bool], FakeMisp],
) -> None:
    """`sighting_lookup`: b does not lead, so it hands its candidates to a, which asks MISP."""
    (_, a), (_, b), _, fake = fronts
    with fake.lock:
        ev = fake.model.create_event("IoCs")
        fake.model.create_attribute(ev.id, "filename", "evil-dropper.exe")
        fake.model.publish(ev.id)
    a.update_settings({**_settings(fake), "sighting_lookup": True})
    _until(lambda: b.settings.sighting_lookup, "b to load the settings")
    hit = gene_event(1, {"Image": "C:\\Temp\\evil-dropper.exe"}, time="2026-11-28T07:59:00Z")
    b.on_events(EP, [hit])
    assert b.sightings.lookup.pending() == 2  # the path and the base name
    b.run_pending()
    assert b.sightings.lookup.pending() == 0 and a.storage.lookups is not None
    assert len(a.storage.lookups) == 1 and a.sightings.lookup_pending() == 1  # one batch of 2
    asked = [r for r in fake.requests_to("/attributes/restSearch") if "value" in (r.body or {})]
    assert asked == []  # only the leader asks MISP
    a.run_pending()
    asked = [r for r in fake.requests_to("/attributes/restSearch") if "value" in (r.body or {})]
    assert len(asked) == 1 and a.sightings.lookup_pending() == 0
    (sent,) = fake.requests_to("/sightings/add")
    assert sent.body["values"] == ["evil-dropper.exe"]
    assert sent.body["source"].endswith("WS-B")


def test_extra_instances_are_shared_by_every_front_end(
    fronts: tuple[Front, Front, dict[str, bool], FakeMisp], tmp_path: Path
) -> None:
    """An instance added on a is built on b (API key under the shared misp.key), follows a's
    settings changes, and deleting it on b removes it, its state and its queues everywhere."""
    (store_a, a), (store_b, b), leading, fake = fronts
    key = tmp_path / "keys" / "misp.key"

    def registry(store: ClusterStore, default: MispSync, name: str) -> MispInstances:
        def build(storage: MispStorage) -> MispSync:
            assert storage.settings is not None
            return MispSync(
                storage.settings.load(None),
                storage,
                sink=MemoryIocSink(),
                leads=lambda job: leading[name],
            )

        def nowhere(path: Path, settings: MispSettings | None) -> MispSync:
            raise AssertionError(f"no instance files in cluster mode: {path}")

        catalog = PgCatalog(store.db, key, name, time.time, build)
        instances = MispInstances(tmp_path / name, default, nowhere, catalog)
        store.changes.subscribe("misp", instances.refresh)
        return instances

    on_a, on_b = registry(store_a, a, "a"), registry(store_b, b, "b")
    partner = on_a.create("partner", _settings(fake))
    assert partner.settings.source_name == "misp-partner"
    _until(lambda: on_b.names() == ["default", "partner"], "b to build a's instance")
    assert on_b.get("partner").settings.api_key == DEFAULT_KEY
    assert on_b.get("partner").settings.namespace == partner.settings.namespace
    with pytest.raises(MispSettingsError, match="exists"):
        on_b.create("partner", _settings(fake))  # b may not have seen it: PostgreSQL refuses
    rows = store_a.db.query("SELECT value FROM settings WHERE key = 'misp:partner'")
    assert DEFAULT_KEY not in rows[0][0]
    assert not (tmp_path / "a" / "instances").exists()

    partner.update_settings({"pull_interval": 123.0})
    _until(lambda: on_b.get("partner").settings.pull_interval == 123.0, "b to follow")
    hit = gene_event(1, {"Hashes": f"SHA256={SHA}"}, time="2026-11-28T07:59:00Z")
    with fake.lock:
        ev = fake.model.create_event("IoCs")
        fake.model.create_attribute(ev.id, "sha256", SHA)
        fake.model.publish(ev.id)
    partner.pull_iocs()
    _until(lambda: on_b.get("partner").iocs.ioc_count == 1, "b's partner IoC index")
    on_b.on_events(EP, [hit])  # queued by b's partner instance, in the shared queue
    assert len(partner.storage.sightings) == 1

    on_b.delete("partner")
    _until(lambda: on_a.names() == ["default"], "a to drop the instance")
    for table, column in (("misp_state", "scope"), ("misp_queue", "scope")):
        left = store_a.db.query(f"SELECT count(*) FROM {table} WHERE {column} LIKE 'partner%'")
        assert left[0][0] == 0, table
    assert store_a.db.query("SELECT count(*) FROM settings WHERE key = 'misp:partner'")[0][0] == 0
