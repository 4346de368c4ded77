"""Cluster mode wiring (docs/cluster.md): a stateless front-end over ClickHouse + PostgreSQL.

A front-end keeps the embedded event store for what must be local and durable before an
acknowledgement (the fsync'd journal; its local index serves nothing in cluster mode but keeps
batch-id dedup and replay as they are), ships the journal to ClickHouse (``index.chship``),
and answers searches, counts, SQL and retro-hunt input from ClickHouse (``index.chstore``),
so every front-end sees every event. Fleet state is ``ClusterStore`` on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from index.chship import Shipper
from index.chstore import ClusterEvents
from index.clickhouse import ClickHouse, ClickHouseError, create_schema

from .config import ClusterConfig
from .errors import ConfigError

__all__ = ["ClusterEventSink", "cluster_status", "frontend_name", "init_cluster", "open_cluster"]


def frontend_name(config: ClusterConfig) -> str:
    return config.frontend or socket.gethostname()


def _shards(config: ClusterConfig) -> list[ClickHouse]:
    return [ClickHouse(url, user=config.clickhouse_user, password=config.clickhouse_password)
            for url in config.clickhouse]


def _events(config: ClusterConfig) -> ClusterEvents:
    shards = _shards(config)
    hunter = (ClickHouse(config.clickhouse[0], user=config.hunter_user,
                         password=config.hunter_password) if config.hunter_user else None)
    return ClusterEvents(shards[0], hunter)


class ClusterEventSink:
    """The manager's ``EventSink``: writes to the local journal, reads from ClickHouse."""

    def __init__(self, local: Any, shipper: Shipper, events: ClusterEvents) -> None:
        self.local = local
        self.shipper = shipper
        self.cluster = events

    def append(self, events: list[dict[str, Any]], *, endpoint: Any,
               batch_id: str | None = None) -> Any:
        result = self.local.append(events, endpoint=endpoint, batch_id=batch_id)
        self.shipper.notify()
        return result

    def append_detections(self, events: list[dict[str, Any]], *, endpoint: Any,
                          batch_id: str | None = None) -> Any:
        result = self.local.append_detections(events, endpoint=endpoint, batch_id=batch_id)
        self.shipper.notify()
        return result

    def search(self, query: str = "", *, since: dt.datetime | None = None,
               until: dt.datetime | None = None, endpoint: str | None = None,
               detections_only: bool = False, limit: int = 100,
               cursor: str | None = None) -> Any:
        return self.cluster.search(query, since=since, until=until, endpoint=endpoint,
                                   detections_only=detections_only, limit=limit, cursor=cursor)

    def count(self, query: str = "", **filters: Any) -> int:
        return self.cluster.count(query, **filters)

    def sql(self, query: str, *, timeout: float = 10.0, max_rows: int = 10_000) -> Any:
        return self.cluster.sql(query, timeout=timeout, max_rows=max_rows)

    def iter_events(self, *, since: dt.datetime | None = None,
                    until: dt.datetime | None = None, endpoint: str | None = None,
                    **kwargs: Any) -> Iterator[dict[str, Any]]:
        return self.cluster.iter_events(since=since, until=until, endpoint=endpoint, **kwargs)

    def health(self) -> dict[str, Any]:
        """The local store's health plus the shipper's (lag is a health state)."""
        out = dict(self.local.health())
        ship = self.shipper.health()
        out["cluster"] = ship
        if ship["error"] and not out.get("error"):
            out["error"] = f"ClickHouse shipping: {ship['error']}"
        return out

    def flush(self, timeout: float | None = 60.0) -> None:
        """Local index committed and every journaled event confirmed by ClickHouse."""
        self.local.flush(timeout)
        if not self.shipper.wait_shipped(self.local.journal.next_seq - 1, timeout or 60.0):
            raise ClickHouseError("ClickHouse did not confirm the journal in time")

    def close(self) -> None:
        self.shipper.stop()
        self.local.close()


def open_cluster(config: ClusterConfig, events_dir: Path) -> tuple[Any, ClusterEventSink]:
    """The fleet store and the event sink of a cluster front-end (schemas must exist)."""
    from index import EventStore

    from .store.postgres import ClusterStore

    store = ClusterStore(config.postgres, create=False)
    try:
        local = EventStore(events_dir, index_process=True)
    except BaseException:
        store.close()
        raise
    shipper = Shipper(local.journal, _shards(config), frontend=frontend_name(config),
                      state_path=events_dir / "ship.json")
    shipper.start()
    return store, ClusterEventSink(local, shipper, _events(config))


def init_cluster(config: ClusterConfig) -> dict[str, Any]:
    """Create the ClickHouse and PostgreSQL schemas (idempotent)."""
    if config.mode != "cluster":
        raise ConfigError("[cluster] mode is not cluster")
    create_schema(_shards(config), config.clickhouse_cluster)
    from .store.postgres import PgDatabase

    db = PgDatabase(config.postgres)
    try:
        db.create_schema()
    finally:
        db.close()
    return cluster_status(config)


def cluster_status(config: ClusterConfig) -> dict[str, Any]:
    """Health of each dependency: every shard (version, rows), PostgreSQL, the read path."""
    out: dict[str, Any] = {"frontend": frontend_name(config), "shards": [], "ok": True}
    for shard in _shards(config):
        try:
            version = ".".join(map(str, shard.version()))
            rows = shard.scalar("SELECT count() FROM heron.events_local")
            out["shards"].append({"url": shard.url, "ok": True, "version": version,
                                  "rows": int(rows)})
        except ClickHouseError as ex:
            out["shards"].append({"url": shard.url, "ok": False, "error": str(ex)})
            out["ok"] = False
    from .errors import StoreError
    from .store.postgres import PgDatabase

    try:
        db = PgDatabase(config.postgres)
        try:
            endpoints = int(db.query("SELECT count(*) FROM endpoints")[0][0])
            out["postgres"] = {"ok": True, "endpoints": endpoints}
        finally:
            db.close()
    except StoreError as ex:
        out["postgres"] = {"ok": False, "error": str(ex)}
        out["ok"] = False
    return out
