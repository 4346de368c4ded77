"""Cluster mode: shards with replicas (``ReplicatedReplacingMergeTree`` over ZooKeeper).

A shard is one ClickHouse server, or several replicas of the same data kept in step by
ZooKeeper (docs/cluster.md, Replicas). ``ReplicaSet`` is the client of a replicated shard: it
talks to one replica at a time and moves to the next when one cannot be reached. Reads and
DDL are re-sent to the next replica at once; an insert is not (it may have landed): the
shipper (``index.chship``) re-sends the very same rows, which ZooKeeper's block deduplication
(``insert_deduplicate``, on by default) drops if the first attempt was committed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from index.clickhouse import (
    DATABASE,
    ClickHouse,
    ClickHouseError,
    ClickHouseUnreachable,
    as_int,
)

__all__ = ["ReplicaSet", "parse_shards", "reachable", "replica_health"]

# system.replicas columns reported by ``replica_health`` (all present on 18.16 and current)
_HEALTH = (
    "is_readonly",
    "is_session_expired",
    "queue_size",
    "inserts_in_queue",
    "absolute_delay",
    "total_replicas",
    "active_replicas",
)
MAX_DELAY = 300  # seconds behind its shard: a replica is unhealthy (Distributed skips it)


class ReplicaSet(ClickHouse):
    """One shard's replicas (``urls``), used one at a time (the preferred one)."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        user: str = "default",
        password: str = "",
        timeout: float = 30.0,
    ) -> None:
        if not urls:
            raise ValueError("a shard needs at least one ClickHouse URL")
        super().__init__(urls[0], user=user, password=password, timeout=timeout)
        self._replicas = [
            ClickHouse(u, user=user, password=password, timeout=timeout) for u in urls
        ]
        self._preferred = 0
        self._lock = threading.Lock()

    @property
    def replicas(self) -> list[ClickHouse]:
        return list(self._replicas)

    @property
    def preferred(self) -> ClickHouse:
        return self._replicas[self._preferred]

    def execute(
        self,
        sql: str,
        *,
        data: bytes | None = None,
        settings: Mapping[str, object] | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """Run on the preferred replica; an unreachable one hands the preference on.

        Raises:
            ClickHouseUnreachable: an insert's replica, or every replica, was unreachable.
            ClickHouseError: the server refused the statement.
        """
        count = len(self._replicas)
        for attempt in range(count):
            index = self._preferred
            try:
                return self._replicas[index].execute(
                    sql, data=data, settings=settings, timeout=timeout
                )
            except ClickHouseUnreachable:
                with self._lock:
                    if self._preferred == index:
                        self._preferred = (index + 1) % count
                if data is not None or attempt == count - 1:
                    raise
        raise AssertionError("unreachable")  # the loop returns or raises


def parse_shards(
    specs: Sequence[str], *, user: str = "default", password: str = "", timeout: float = 30.0
) -> list[ClickHouse]:
    """One client per shard, in shard order: ``"http://a:8123"`` is a one-server shard,
    ``"http://a:8123, http://b:8123"`` a shard of two replicas.

    Raises:
        ValueError: an empty shard.
    """
    out: list[ClickHouse] = []
    for spec in specs:
        urls = [u.strip() for u in spec.split(",") if u.strip()]
        if not urls:
            raise ValueError(f"empty ClickHouse shard {spec!r}")
        if len(urls) == 1:
            out.append(ClickHouse(urls[0], user=user, password=password, timeout=timeout))
        else:
            out.append(ReplicaSet(urls, user=user, password=password, timeout=timeout))
    return out


def replica_health(node: ClickHouse) -> dict[str, object]:
    """One replica's state of ``events_local`` from ``system.replicas`` (queue, delay, read-only
    when it lost ZooKeeper), plus ``ok``. Raises ClickHouseError when it cannot answer."""
    names, rows = node.rows(
        f"SELECT {', '.join(_HEALTH)} FROM system.replicas WHERE database = '{DATABASE}' "
        "AND table = 'events_local'"
    )
    if not rows:
        raise ClickHouseError(f"{node.url}: {DATABASE}.events_local is not a replicated table")
    # 64-bit integers come back as JSON strings on 18.16
    state = {name: as_int(value) for name, value in zip(names, rows[0], strict=True)}
    ok = not (
        state["is_readonly"] or state["is_session_expired"] or state["absolute_delay"] > MAX_DELAY
    )
    return {**state, "ok": ok}


def reachable(nodes: Sequence[ClickHouse]) -> list[ClickHouse]:
    """The nodes that answer now (a plain ``SELECT 1``)."""
    out = []
    for node in nodes:
        try:
            node.execute("SELECT 1")
        except ClickHouseUnreachable:
            continue
        out.append(node)
    return out
