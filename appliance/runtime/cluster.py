"""Cluster mode wiring (docs/cluster.md): a stateless front-end over ClickHouse + PostgreSQL.

A front-end keeps the embedded event store for what must be local and durable before an
acknowledgement (the fsync'd journal; its local index serves nothing in cluster mode but keeps
batch-id dedup and replay as they are), ships the journal to ClickHouse (``index.chship``),
and answers searches, counts, SQL and retro-hunt input from ClickHouse (``index.chstore``),
so every front-end sees every event. Fleet state is ``ClusterStore`` on PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from index import IndexHealth, IndexState
from index.chquery import quote
from index.chreplica import parse_shards, replica_health
from index.chship import Shipper
from index.chstore import ClusterEvents
from index.clickhouse import (
    DATABASE,
    ClickHouse,
    ClickHouseError,
    as_int,
    create_schema,
    drop_partitions_before,
)

from ..core.config import ClusterConfig
from ..core.errors import ConfigError

if TYPE_CHECKING:
    from ..services.streams import StreamHub
    from ..store.postgres import ClusterStore

__all__ = [
    "ClusterEventSink",
    "StreamRelay",
    "cluster_status",
    "frontend_name",
    "init_cluster",
    "open_cluster",
    "start_relay",
]

logger = logging.getLogger(__name__)
_RELAY_PAGE = 5_000


def frontend_name(config: ClusterConfig) -> str:
    return config.frontend or socket.gethostname()


def _shards(config: ClusterConfig) -> list[ClickHouse]:
    """One client per shard (a replicated shard's fails over between its replicas)."""
    return parse_shards(
        config.clickhouse, user=config.clickhouse_user, password=config.clickhouse_password
    )


def _events(config: ClusterConfig) -> ClusterEvents:
    shards = _shards(config)
    hunter = (
        parse_shards(
            config.clickhouse[:1], user=config.hunter_user, password=config.hunter_password
        )[0]
        if config.hunter_user
        else None
    )
    return ClusterEvents(shards[0], hunter)


class StreamRelay:
    """Feed this front-end's stream hub with the events other front-ends ingested.

    Polls each shard's local table (within a shard, a front-end's rows land in sequence
    order, one insert after the other) for rows of other front-ends above per-(shard,
    front-end) marks, while the hub has subscribers; streams see them about one poll plus one
    shipping round late. With no subscriber it only re-reads the marks when one arrives.
    """

    def __init__(
        self, shards: list[ClickHouse], frontend: str, hub: StreamHub, *, interval: float = 0.5
    ) -> None:
        self._shards, self._me, self._hub, self._interval = shards, frontend, hub, interval
        self._marks: list[dict[str, int]] | None = None
        self._since = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heron-stream-relay", daemon=True)
        self.relayed = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if not self._hub.clients:
                self._marks = None
                continue
            try:
                if self._marks is None:
                    self._since = int(time.time()) - 1
                    self._marks = [self._current(shard) for shard in self._shards]
                for shard, marks in zip(self._shards, self._marks, strict=True):
                    self._poll(shard, marks)
            except ClickHouseError as ex:
                logger.warning("stream relay: %s", ex)

    def _current(self, shard: ClickHouse) -> dict[str, int]:
        _, rows = shard.rows(
            f"SELECT frontend, max(seq) FROM {DATABASE}.events_local WHERE "
            f"frontend != {quote(self._me)} GROUP BY frontend"
        )
        return {str(r[0]): as_int(r[1]) for r in rows}

    def _poll(self, shard: ClickHouse, marks: dict[str, int]) -> None:
        known = [f"(frontend = {quote(fe)} AND seq > {seq})" for fe, seq in marks.items()]
        fresh = (
            f"(frontend != {quote(self._me)} AND rt >= toDateTime({self._since}, 'UTC')"
            + "".join(f" AND frontend != {quote(fe)}" for fe in marks)
            + ")"
        )
        _, rows = shard.rows(
            f"SELECT frontend, seq, raw FROM {DATABASE}.events_local WHERE "
            f"{' OR '.join([*known, fresh])} ORDER BY frontend, seq LIMIT {_RELAY_PAGE}"
        )
        if not rows:
            return
        for row in rows:
            marks[str(row[0])] = max(marks.get(str(row[0]), 0), as_int(row[1]))
        self._hub.publish([orjson.loads(str(row[2])) for row in rows])
        self.relayed += len(rows)


class ClusterEventSink:
    """The manager's ``EventSink``: writes to the local journal, reads from ClickHouse."""

    # Retro-hunt (appliance.services.hunting): prefilter into SQL, engine in worker processes.
    hunt_prefilter = True
    hunt_workers = max(1, min(4, (os.cpu_count() or 2) - 1))

    def __init__(self, local: Any, shipper: Shipper, events: ClusterEvents) -> None:
        self.local = local
        self.shipper = shipper
        self.cluster = events
        self.relay: StreamRelay | None = None

    def relay_to(self, hub: StreamHub, shards: list[ClickHouse]) -> None:
        """Start feeding ``hub`` with other front-ends' events (see ``StreamRelay``)."""
        self.relay = StreamRelay(shards, self.shipper.frontend, hub)
        self.relay.start()

    def append(
        self, events: list[dict[str, Any]], *, endpoint: Any, batch_id: str | None = None
    ) -> Any:
        result = self.local.append(events, endpoint=endpoint, batch_id=batch_id)
        self.shipper.notify()
        return result

    def append_detections(
        self, events: list[dict[str, Any]], *, endpoint: Any, batch_id: str | None = None
    ) -> Any:
        result = self.local.append_detections(events, endpoint=endpoint, batch_id=batch_id)
        self.shipper.notify()
        return result

    def search(
        self,
        query: str = "",
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        endpoint: str | None = None,
        detections_only: bool = False,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Any:
        return self.cluster.search(
            query,
            since=since,
            until=until,
            endpoint=endpoint,
            detections_only=detections_only,
            limit=limit,
            cursor=cursor,
        )

    def count(self, query: str = "", **filters: Any) -> int:
        return self.cluster.count(query, **filters)

    def sql(
        self,
        query: str,
        *,
        timeout: float = 10.0,
        max_rows: int = 10_000,
        max_bytes: int = 16 * 1024 * 1024,
    ) -> Any:
        return self.cluster.sql(query, timeout=timeout, max_rows=max_rows, max_bytes=max_bytes)

    def iter_events(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        endpoint: str | None = None,
        **kwargs: Any,
    ) -> Iterator[dict[str, Any]]:
        return self.cluster.iter_events(since=since, until=until, endpoint=endpoint, **kwargs)

    def health(self) -> IndexHealth:
        """The local store's health, or the shipper's error (the journal keeps the events)."""
        local: IndexHealth = self.local.health()
        ship = self.shipper.health()
        if ship["error"] and local.ok:
            reason = f"ClickHouse shipping: {ship['error']}"
            return dataclasses.replace(local, state=IndexState.GAP, reason=reason, cluster=ship)
        return dataclasses.replace(local, cluster=ship)

    # -- retention (appliance.services.retention.RetentionStore) ---------------------------

    def apply_retention(
        self, *, max_age: dt.timedelta | None = None, max_bytes: int | None = None
    ) -> int:
        """Drop ClickHouse receipt days older than ``max_age``, then the local journal/index.

        The local store is trimmed only while everything journaled is confirmed by ClickHouse:
        an unshipped event is never dropped (a long ClickHouse outage grows the journal).
        """
        if max_age is not None:
            cutoff = dt.datetime.now(dt.UTC) - max_age
            drop_partitions_before(self.shipper.shards, cutoff.strftime("%Y%m%d"))
        if self.shipper.lag() > 0:
            logger.warning(
                "local retention skipped: %d events not yet in ClickHouse", self.shipper.lag()
            )
            return int(self.local.stats()["min_seq"])
        return int(self.local.apply_retention(max_age=max_age, max_bytes=max_bytes))

    def merge_segments(self) -> int:
        return int(self.local.merge_segments())

    def stats(self) -> dict[str, Any]:
        return dict(self.local.stats())

    def disk_usage(self) -> dict[str, int]:
        return dict(self.local.disk_usage())

    def flush(self, timeout: float | None = 60.0) -> None:
        """Local index committed and every journaled event confirmed by ClickHouse."""
        self.local.flush(timeout)
        if not self.shipper.wait_shipped(self.local.journal.next_seq - 1, timeout or 60.0):
            raise ClickHouseError("ClickHouse did not confirm the journal in time")

    def close(self) -> None:
        if self.relay is not None:
            self.relay.stop()
        self.shipper.stop()
        self.local.close()


def open_cluster(config: ClusterConfig, events_dir: Path) -> tuple[ClusterStore, ClusterEventSink]:
    """The fleet store and the event sink of a cluster front-end (schemas must exist)."""
    from index import EventStore

    from ..store.postgres import ClusterStore

    store = ClusterStore(config.postgres, create=False)
    try:
        local = EventStore(events_dir, index_process=True)
    except BaseException:
        store.close()
        raise
    shipper = Shipper(
        local.journal,
        _shards(config),
        frontend=frontend_name(config),
        state_path=events_dir / "ship.json",
    )
    shipper.start()
    return store, ClusterEventSink(local, shipper, _events(config))


def start_relay(sink: ClusterEventSink, config: ClusterConfig, hub: StreamHub) -> None:
    """Streams on this front-end also carry the events other front-ends ingest."""
    sink.relay_to(hub, _shards(config))


def init_cluster(config: ClusterConfig) -> dict[str, Any]:
    """Create the ClickHouse and PostgreSQL schemas (idempotent)."""
    if config.mode != "cluster":
        raise ConfigError("[cluster] mode is not cluster")
    create_schema(_shards(config), config.clickhouse_cluster)
    from ..misp.pgstore import create_tables
    from ..store.postgres import PgDatabase

    db = PgDatabase(config.postgres)
    try:
        db.create_schema()
        create_tables(db)  # the MISP sync's state and queues
    finally:
        db.close()
    return cluster_status(config)


def _server_status(node: ClickHouse, replicated: bool) -> dict[str, Any]:
    """One server: version and rows; a replica also its ``system.replicas`` health."""
    try:
        out: dict[str, Any] = {
            "url": node.url,
            "ok": True,
            "version": ".".join(map(str, node.version())),
            "rows": as_int(node.scalar(f"SELECT count() FROM {DATABASE}.events_local")),
        }
        if replicated:
            out.update(replica_health(node))
        return out
    except ClickHouseError as ex:
        return {"url": node.url, "ok": False, "error": str(ex)}


def cluster_status(config: ClusterConfig) -> dict[str, Any]:
    """Health of each dependency: every shard (version, rows), PostgreSQL, the read path."""
    out: dict[str, Any] = {"frontend": frontend_name(config), "shards": [], "ok": True}
    for shard in _shards(config):
        replicas = [_server_status(node, len(shard.replicas) > 1) for node in shard.replicas]
        entry = dict(replicas[0])
        if len(replicas) > 1:  # the shard: its first healthy replica's figures, and each one
            entry = {**next((r for r in replicas if r["ok"]), replicas[0]), "url": shard.url}
            entry["replicas"] = replicas
        out["shards"].append(entry)
        out["ok"] = out["ok"] and all(r["ok"] for r in replicas)
    from ..core.errors import StoreError
    from ..store.postgres import PgDatabase

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
