"""The MISP sync's state in PostgreSQL (cluster mode, docs/cluster.md): shared by every front-end.

The same seams as state.py and settings.py, over the fleet database (`PgDatabase`):

* `PgSettingsStore`: the settings document in the fleet `settings` table (key `misp`), the API
  key still a Fernet token under the front-end's own `<data>/keys/misp.key` (every front-end
  needs the same file, copied like `pki/`). Each save sends `NOTIFY heron_fleet, 'misp'`, on
  which every front-end reloads (`MispSync.reload`, shared.py).
* `PgStateStore`: the sync state documents (IoC set and cursors, pushed-report ledger, day
  generations, attempts, dead letters) in `misp_state`; the sighting de-duplication cache stays
  one document per front-end (each observes its own agents).
* `PgQueue`: the sighting and report queues in `misp_queue`, filled by every front-end and
  drained by the leader of `misp.reports` only. An item leaves the table after MISP answered, so a
  killed leader's items are pushed by the next one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import MispSettingsError
from .settings import MispSettings, SettingsStore

if TYPE_CHECKING:  # psycopg is the `cluster` extra
    from ..store.postgres import PgDatabase
    from .service import MispSync
    from .storage import MispStorage

__all__ = [
    "DDL",
    "PgCatalog",
    "PgQueue",
    "PgSettingsStore",
    "PgStateStore",
    "create_tables",
    "pg_storage",
]

TOPIC = "misp"  # NOTIFY heron_fleet payload
LOCAL_DOCS = frozenset({"sightings-seen"})  # per front-end: the TTL cache of what it queued
PAGE = 200  # queue rows per read
NOTIFY_DOCS = frozenset({"iocs", "dead-letters"})  # others read them: the IoC index, the list
DDL = (
    "CREATE TABLE IF NOT EXISTS misp_state (scope VARCHAR, name VARCHAR, value VARCHAR, "
    "updated DOUBLE, PRIMARY KEY (scope, name))",
    "CREATE TABLE IF NOT EXISTS misp_queue (id BIGSERIAL PRIMARY KEY, scope VARCHAR, "
    "stream VARCHAR, item VARCHAR, queued DOUBLE)",
    "CREATE INDEX IF NOT EXISTS misp_queue_stream ON misp_queue (scope, stream, id)",
)


def create_tables(db: PgDatabase) -> None:
    """Create the MISP tables (idempotent; `cluster init`, and a front-end's start after an
    upgrade). Two front-ends creating a table at once: one fails; it was created."""
    from ..core.errors import StoreError

    for statement in DDL:

        def run(cur: Any, sql: str = statement) -> None:
            cur.execute(sql)

        try:
            db.write(run)
        except StoreError:
            db.write(run)  # exists now: a no-op


class PgStateStore:
    """Named JSON documents of one MISP instance (`scope`) in `misp_state`."""

    def __init__(
        self, db: PgDatabase, scope: str, frontend: str, clock: Callable[[], float]
    ) -> None:
        self.db = db
        self.scope = scope
        self.frontend = frontend
        self.clock = clock

    def _key(self, name: str) -> tuple[str, str]:
        return (f"{self.scope}@{self.frontend}" if name in LOCAL_DOCS else self.scope), name

    def load(self, name: str) -> Any:
        rows = self.db.query(
            "SELECT value FROM misp_state WHERE scope = ? AND name = ?", list(self._key(name))
        )
        return json.loads(rows[0][0]) if rows else None

    def save(self, name: str, value: Any) -> None:
        params = [*self._key(name), json.dumps(value, separators=(",", ":")), self.clock()]
        self.db.write(
            lambda cur: cur.execute(
                "INSERT INTO misp_state (scope, name, value, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (scope, name) DO UPDATE SET value = EXCLUDED.value, "
                "updated = EXCLUDED.updated",
                params,
            )
        )
        if name in NOTIFY_DOCS:
            self.db.notify(TOPIC)


class PgQueue:
    """One stream's queue (`sightings`, `reports`) of one instance, oldest first."""

    def __init__(self, db: PgDatabase, scope: str, stream: str, clock: Callable[[], float]) -> None:
        self.db = db
        self.scope = scope
        self.stream = stream
        self.clock = clock

    def put(self, item: Any) -> str:
        params = [self.scope, self.stream, json.dumps(item), self.clock()]

        def insert(cur: Any) -> int:
            row = cur.execute(
                "INSERT INTO misp_queue (scope, stream, item, queued) VALUES (?, ?, ?, ?) "
                "RETURNING id",
                params,
            ).fetchone()
            return int(row[0])

        return f"{self.db.write(insert):016d}"

    def items(self) -> Iterator[tuple[str, Any]]:
        """Oldest first, read by pages (a caller often wants only the first few)."""
        after = 0
        while True:
            rows = self.db.query(
                "SELECT id, item FROM misp_queue WHERE scope = ? AND stream = ? AND id > ? "
                "ORDER BY id LIMIT ?",
                [self.scope, self.stream, after, PAGE],
            )
            for item_id, text in rows:
                yield f"{int(item_id):016d}", json.loads(text)
            if len(rows) < PAGE:
                return
            after = int(rows[-1][0])

    def remove(self, item_id: str) -> None:
        params = [int(item_id), self.scope, self.stream]
        self.db.write(
            lambda cur: cur.execute(
                "DELETE FROM misp_queue WHERE id = ? AND scope = ? AND stream = ?", params
            )
        )

    def __len__(self) -> int:
        rows = self.db.query(
            "SELECT count(*) FROM misp_queue WHERE scope = ? AND stream = ?",
            [self.scope, self.stream],
        )
        return int(rows[0][0])


class PgSettingsStore(SettingsStore):
    """The settings document in the fleet `settings` table; the Fernet key stays a local file."""

    def __init__(
        self, db: PgDatabase, scope: str, key_path: Path, clock: Callable[[], float]
    ) -> None:
        super().__init__(key_path.parent, key_path)
        self.db = db
        self.key = TOPIC if scope == "default" else f"{TOPIC}:{scope}"
        self.clock = clock

    def _migrate(self) -> None:
        return None  # no earlier layout in PostgreSQL

    def _read(self) -> dict[str, Any] | None:
        rows = self.db.query("SELECT value FROM settings WHERE key = ?", [self.key])
        if not rows:
            return None
        doc: dict[str, Any] = json.loads(rows[0][0])
        return doc

    def _write(self, doc: dict[str, Any]) -> None:
        params = [self.key, json.dumps(doc, sort_keys=True), self.clock()]
        self.db.write(
            lambda cur: cur.execute(
                "INSERT INTO settings (key, value, updated) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
                "updated = EXCLUDED.updated",
                params,
            )
        )
        self.db.notify(TOPIC)  # every front-end reloads (its own too: harmless)

    def _create(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Front-ends starting together must agree on one document (one namespace)."""
        params = [self.key, json.dumps(doc, sort_keys=True), self.clock()]
        self.db.write(
            lambda cur: cur.execute(
                "INSERT INTO settings (key, value, updated) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO NOTHING",
                params,
            )
        )
        stored = self._read()
        assert stored is not None
        return stored


def pg_storage(
    db: PgDatabase,
    key_path: Path,
    frontend: str,
    clock: Callable[[], float],
    scope: str = "default",
) -> MispStorage:
    """The storage of one MISP instance in PostgreSQL (tables created if missing)."""
    from .storage import MispStorage

    create_tables(db)
    return MispStorage(
        state=PgStateStore(db, scope, frontend, clock),
        sightings=PgQueue(db, scope, "sightings", clock),
        reports=PgQueue(db, scope, "reports", clock),
        settings=PgSettingsStore(db, scope, key_path, clock),
        shared=True,
        lookups=PgQueue(db, scope, "lookups", clock),
    )


class PgCatalog:
    """The extra MISP instances (instances.py) in PostgreSQL: one settings row `misp:<name>`
    each, its state and queues under scope `<name>`, every API key a Fernet token under the one
    shared `misp.key`. Creating or deleting one sends `NOTIFY heron_fleet, 'misp'`, on which
    every front-end builds or drops it (`MispInstances.refresh`)."""

    def __init__(
        self,
        db: PgDatabase,
        key_path: Path,
        frontend: str,
        clock: Callable[[], float],
        build: Callable[[MispStorage], MispSync],
    ) -> None:
        self.db = db
        self.key_path = key_path
        self.frontend = frontend
        self.clock = clock
        self._build = build

    def names(self) -> list[str]:
        rows = self.db.query("SELECT key FROM settings WHERE key LIKE ?", [f"{TOPIC}:%"])
        return sorted(str(key).partition(":")[2] for (key,) in rows)

    def open(self, name: str, settings: MispSettings | None) -> MispSync:
        """The instance `name`; with `settings`, a new one (MispSettingsError if it exists)."""
        storage = pg_storage(self.db, self.key_path, self.frontend, self.clock, scope=name)
        store = storage.settings
        assert isinstance(store, PgSettingsStore)
        if settings is not None:
            doc = store._encrypt(settings.with_namespace())
            params = [store.key, json.dumps(doc, sort_keys=True), self.clock()]

            def insert(cur: Any) -> bool:
                return (
                    cur.execute(
                        "INSERT INTO settings (key, value, updated) VALUES (?, ?, ?) "
                        "ON CONFLICT (key) DO NOTHING RETURNING key",
                        params,
                    ).fetchone()
                    is not None
                )

            if not self.db.write(insert):
                raise MispSettingsError(f"instance {name!r} exists", operation="instances")
            self.db.notify(TOPIC)
        return self._build(storage)

    def remove(self, name: str) -> None:
        """Delete the instance's settings, state (every front-end's) and queues."""
        params = [f"{TOPIC}:{name}", name, f"{name}@%", name]

        def delete(cur: Any) -> None:
            cur.execute("DELETE FROM settings WHERE key = ?", params[:1])
            cur.execute("DELETE FROM misp_state WHERE scope = ? OR scope LIKE ?", params[1:3])
            cur.execute("DELETE FROM misp_queue WHERE scope = ?", params[3:])

        self.db.write(delete)
        self.db.notify(TOPIC)
