"""Cluster mode, events side: a ClickHouse HTTP client, the event schema and the rows.

Why the HTTP interface with the stdlib: it is the one protocol that Debian's ClickHouse 18.16
and current releases speak alike (the native protocol's revisions moved a lot), it needs no
dependency, and every setting travels as a URL parameter.

Schema (``cluster init``), on every server of the ``<cluster>`` of ``remote_servers``:

* ``heron.events_local``: ``ReplacingMergeTree``, partitioned by receipt day, sorted by
  ``(ts_us, endpoint, batch_id, batch_idx)`` (``SORTING_KEY``): event time first, so the
  primary index prunes a time window to its granules on every version (18.16 has no skipping
  indexes; newest-first pages read windows, ``index.chstore``), then one key per event as the
  agent sent it, so an agent's retry that reached another front-end (same event, so the same
  time) is folded at merge time (``FINAL`` reads exact).
* ``heron.events``: ``Distributed(<cluster>, heron, events_local, <shard key>)`` for reads.

The shipper (``index.chship``) inserts into the shards' local tables itself, choosing the
shard from the endpoint (:func:`shard_of`), so an insert is synchronous and its outcome known.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeAlias

import orjson

from index.errors import StoreError
from index.fields import COLUMNS_ONLY, HASH_ALGOS, PROMOTED
from index.journal import JournalRecord
from index.schema import project_many, to_micros

__all__ = [
    "Cell",
    "ClickHouse",
    "ClickHouseError",
    "ClickHouseUnreachable",
    "as_int",
    "create_schema",
    "has_skip_indexes",
    "record_rows",
    "shard_of",
]

DATABASE = "heron"
# Performance: a search page fetches ``raw`` of ≤ 100 rows by key, and a granule is the unit
# read: 1024 rows (~0.7 MB of ``raw``) instead of the default 8192 cut that fetch ~8×.
INDEX_GRANULARITY = 1024
# The dedup key of ReplacingMergeTree, event time first (module docstring). Tables created with
# the first slice's (endpoint, batch_id, batch_idx) keep it: same results, no time pruning.
SORTING_KEY = "(ts_us, endpoint, batch_id, batch_idx)"
# ZooKeeper path of a replicated shard's table: the servers' macros fill in {shard}
REPLICA_PATH = "/clickhouse/tables/{shard}/heron/events_local"
SKIP_INDEX_VERSION = (21, 8)  # skipping indexes and hasToken are plain features from here on
_DATA_COLUMNS = tuple({**PROMOTED, **COLUMNS_ONLY}.values())
# (name, ClickHouse type): the DuckDB ``events`` columns plus what cluster mode needs.
CH_COLUMNS: tuple[tuple[str, str], ...] = (
    ("frontend", "String"),
    ("seq", "UInt64"),
    ("batch_id", "String"),
    ("batch_idx", "UInt32"),
    ("ts", "DateTime('UTC')"),
    ("ts_us", "Int64"),
    ("rt", "DateTime('UTC')"),
    ("endpoint", "String"),
    ("hostname", "String"),
    ("channel", "String"),
    ("event_id", "Int64"),
    ("computer", "String"),
    *((col, "String") for col in _DATA_COLUMNS),
    *((algo, "String") for algo in HASH_ALGOS),
    ("hashes", "Array(String)"),
    ("signatures", "Array(String)"),
    ("criticality", "UInt8"),
    ("detection", "UInt8"),
    ("retro", "UInt8"),
    ("event_hash", "String"),
    ("techniques", "Array(String)"),  # ATT&CK technique IDs of the detection (DuckDB's)
    ("tactics", "Array(String)"),  # and its tactics, as ``index.fields.attack_tactic``
    ("kv", "Array(String)"),  # lower-case ``name=value`` of every EventData/UserData field
    ("text", "String"),  # lower-case free text: the values the embedded ``all`` field holds
    ("raw", "String"),  # the event JSON returned by searches
)


# One value of a ``JSONCompact`` result: numbers (64-bit integers come as strings), strings,
# arrays (``Array(String)`` columns), maps and NULL.
Cell: TypeAlias = "str | int | float | bool | None | list[Cell] | dict[str, Cell]"


class ClickHouseError(StoreError):
    """A ClickHouse request failed (connection, HTTP error or server exception)."""


def as_int(cell: Cell) -> int:
    """An integer cell (``count()``, ``UInt64``: JSON strings on 18.16 and current servers).

    Raises:
        ClickHouseError: the cell is not an integer (a query that does not return one).
    """
    if isinstance(cell, bool) or not isinstance(cell, int | str):
        raise ClickHouseError(f"expected an integer, got {cell!r}")
    try:
        return int(cell)
    except ValueError as ex:
        raise ClickHouseError(f"expected an integer, got {cell!r}") from ex


class ClickHouseUnreachable(ClickHouseError):
    """The server could not be reached or dropped the connection (another replica may answer)."""


class ClickHouse:
    """One ClickHouse server over HTTP (``url`` like ``http://127.0.0.1:8123``)."""

    def __init__(
        self, url: str, *, user: str = "default", password: str = "", timeout: float = 30.0
    ) -> None:
        self.url = url.rstrip("/")
        self._auth = {"user": user, "password": password}
        self._timeout = timeout

    def execute(
        self,
        sql: str,
        *,
        data: bytes | None = None,
        settings: Mapping[str, object] | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """Run one statement; ``data`` is the body of an ``INSERT … FORMAT …``.

        Raises:
            ClickHouseError: the server refused the statement or could not be reached.
        """
        params = {**self._auth, **{k: str(v) for k, v in (settings or {}).items()}}
        body = data
        if data is None:
            body = sql.encode()
        else:
            params["query"] = sql
        req = urllib.request.Request(
            f"{self.url}/?{urllib.parse.urlencode(params)}", data=body, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout or self._timeout) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as ex:
            detail = ex.read().decode(errors="replace").strip()
            raise ClickHouseError(f"{self.url}: {detail[:2000]}") from ex
        except TimeoutError as ex:  # it answered too slowly: it may still be running the query
            raise ClickHouseError(f"{self.url}: {ex}") from ex
        except (OSError, urllib.error.URLError, http.client.HTTPException) as ex:
            raise ClickHouseUnreachable(f"{self.url}: {ex}") from ex

    @property
    def replicas(self) -> list[ClickHouse]:
        """The servers holding this shard's data: this one (``index.chreplica.ReplicaSet``
        lists a replicated shard's replicas)."""
        return [self]

    def rows(
        self,
        sql: str,
        *,
        settings: Mapping[str, object] | None = None,
        timeout: float | None = None,
    ) -> tuple[list[str], list[list[Cell]]]:
        """Run a SELECT and return ``(column names, rows)`` (``FORMAT JSONCompact``)."""
        out = orjson.loads(
            self.execute(f"{sql} FORMAT JSONCompact", settings=settings, timeout=timeout)
        )
        return [str(c["name"]) for c in out["meta"]], list(out["data"])

    def scalar(self, sql: str) -> Cell:
        """The first cell of the first row (``None`` without rows)."""
        _, rows = self.rows(sql)
        return rows[0][0] if rows else None

    def version(self) -> tuple[int, ...]:
        """The server version as integers (``(18, 16, 1)``)."""
        text = str(self.scalar("SELECT version()"))
        return tuple(int(p) for p in text.split(".") if p.isdigit())

    def insert_rows(
        self, table: str, rows: Sequence[Mapping[str, object]], *, query_id: str | None = None
    ) -> None:
        """Insert rows as one ``JSONEachRow`` block (one part per partition); ``query_id``
        names the insert in ``system.processes`` while the server runs it."""
        if not rows:
            return
        body = b"\n".join(orjson.dumps(r) for r in rows)
        settings = {"query_id": query_id} if query_id else None
        self.execute(f"INSERT INTO {table} FORMAT JSONEachRow", data=body, settings=settings)


def shard_of(endpoint: str, shards: int) -> int:
    """The shard of an endpoint's events (stable across front-ends and restarts)."""
    return zlib.crc32(endpoint.lower().encode()) % shards


def has_skip_indexes(version: tuple[int, ...]) -> bool:
    """Whether a server of ``version`` has data-skipping indexes (``tokenbf_v1``, ``minmax``)
    and ``hasToken`` without experimental settings (18.16 has neither)."""
    return version >= SKIP_INDEX_VERSION


def local_table_ddl(table: str, *, skip_indexes: bool = False, replicated: bool = False) -> str:
    """The shard-local events table.

    Partitioned by receipt day, not event day: an agent replaying old logs would otherwise
    make one insert touch hundreds of partitions (refused past ``max_partitions_per_insert_
    block`` on current servers), and retention drops whole receipt days.

    ``skip_indexes`` (current servers): a token bloom filter on ``text`` (``hasToken`` guards
    of ``index.chquery`` skip granules without the word) and a min/max of ``ts_us`` per
    granule (events arrive roughly in time order, so time windows skip most granules).

    ``replicated``: ``ReplicatedReplacingMergeTree`` at ``REPLICA_PATH`` (the servers'
    ``{shard}``/``{replica}`` macros name the copy), same key and folding.
    """
    cols = ", ".join(f"{name} {ddl}" for name, ddl in CH_COLUMNS)
    if skip_indexes:
        cols += (
            ", INDEX text_tokens text TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 1"
            ", INDEX ts_range ts_us TYPE minmax GRANULARITY 1"
        )
    return (
        f"CREATE TABLE IF NOT EXISTS {table} ({cols}) ENGINE = {_engine(replicated)} "
        f"PARTITION BY toYYYYMMDD(rt) ORDER BY {SORTING_KEY} "
        f"SETTINGS index_granularity = {INDEX_GRANULARITY}"
    )


def _engine(replicated: bool) -> str:
    if replicated:
        return f"ReplicatedReplacingMergeTree('{REPLICA_PATH}', '{{replica}}')"
    return "ReplacingMergeTree()"


def create_schema(shards: Sequence[ClickHouse], cluster: str) -> None:
    """Create the database, ``events_local`` and the ``events`` Distributed table (idempotent)
    on every server of every shard.

    Tables of an earlier schema get the columns they lack (``ALTER … ADD COLUMN … AFTER``,
    which 18.16 has; ``IF NOT EXISTS`` there is newer), so ``cluster init`` also upgrades.
    When a shard lists replicas, ``events_local`` is replicated on every shard (an ALTER
    of a replicated table reaches its replicas through ZooKeeper: it runs once per shard).

    Raises:
        ClickHouseError: a server failed, or an existing table is not replicated although the
            config now declares replicas (converting it is a manual step, docs/cluster.md).
    """
    replicated = any(len(shard.replicas) > 1 for shard in shards)
    for shard in shards:
        for i, node in enumerate(shard.replicas):
            node.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
            indexes = has_skip_indexes(node.version())
            node.execute(
                local_table_ddl(
                    f"{DATABASE}.events_local", skip_indexes=indexes, replicated=replicated
                )
            )
            engine = node.scalar(
                f"SELECT engine FROM system.tables WHERE database = '{DATABASE}' "
                "AND name = 'events_local'"
            )
            if replicated and not str(engine).startswith("Replicated"):
                raise ClickHouseError(
                    f"{node.url}: {DATABASE}.events_local is {engine}, not replicated, but the "
                    "config lists replicas: convert it first (docs/cluster.md, Replicas)"
                )
            node.execute(
                f"CREATE TABLE IF NOT EXISTS {DATABASE}.events AS {DATABASE}.events_local "
                f"ENGINE = Distributed({cluster}, {DATABASE}, events_local, "
                "cityHash64(endpoint))"
            )
            if i == 0 or not replicated:
                _add_missing_columns(node, "events_local")
            _add_missing_columns(node, "events")


def _add_missing_columns(node: ClickHouse, table: str, *, database: str = DATABASE) -> None:
    _, rows = node.rows(
        f"SELECT name FROM system.columns WHERE database = '{database}' AND table = '{table}'"
    )
    have = {str(r[0]) for r in rows}
    previous = ""
    for name, ddl in CH_COLUMNS:
        if name not in have and previous:
            node.execute(f"ALTER TABLE {database}.{table} ADD COLUMN {name} {ddl} AFTER {previous}")
        previous = name


def _dt(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


def record_rows(record: JournalRecord, frontend: str) -> list[dict[str, Any]]:
    """The ClickHouse rows of one journal record (same projection as the embedded store)."""
    from datetime import UTC

    endpoint = record.endpoint.get("uuid", "").lower()
    hostname = record.endpoint.get("hostname", "")
    rt = datetime.fromtimestamp(record.rt_ns // 1000 / 1e6, UTC)
    raws = [orjson.dumps(event) for event in record.events]
    projections = project_many(
        record.events,
        first_seq=record.first_seq,
        rt=rt,
        endpoint=endpoint,
        hostname=hostname,
        raws=raws,
    )
    # NOTE: without an agent batch id, the front-end's own (frontend, first seq) names the batch.
    batch_id = record.batch_id or f"{frontend}:{record.first_seq}"
    out = []
    for idx, proj in enumerate(projections):
        doc = orjson.loads(proj.doc_json)
        row = proj.row
        values = dict(
            zip(
                ("seq", "ts", "rt", "endpoint", "hostname", "channel", "event_id", "computer"),
                row[:8],
                strict=True,
            )
        )
        data = row[8 : 8 + len(_DATA_COLUMNS)]
        algos = row[8 + len(_DATA_COLUMNS) : 8 + len(_DATA_COLUMNS) + len(HASH_ALGOS)]
        base = 8 + len(_DATA_COLUMNS) + len(HASH_ALGOS)
        sigs, crit, det, retro, ehash, techniques, tactics = row[base : base + 7]
        text = [*doc.get("all", []), *(doc.get(col, "") for col in PROMOTED.values())]
        out.append(
            {
                "frontend": frontend,
                "seq": proj.seq,
                "batch_id": batch_id,
                "batch_idx": idx,
                "ts": _dt(values["ts"]),
                "ts_us": to_micros(values["ts"].replace(tzinfo=UTC)),
                "rt": _dt(values["rt"]),
                "endpoint": endpoint,
                "hostname": hostname or "",
                "channel": values["channel"] or "",
                "event_id": int(values["event_id"]),
                "computer": values["computer"] or "",
                **{col: v or "" for col, v in zip(_DATA_COLUMNS, data, strict=True)},
                **{algo: v or "" for algo, v in zip(HASH_ALGOS, algos, strict=True)},
                "hashes": list(doc.get("hash", [])),
                "signatures": list(sigs),
                "criticality": int(crit),
                "detection": int(bool(det)),
                "retro": int(bool(retro)),
                "event_hash": ehash or "",
                "techniques": list(techniques or ()),
                "tactics": list(tactics or ()),
                "kv": list(doc.get("kv", [])),
                "text": "\n".join(t for t in text if t).lower(),
                "raw": proj.raw.decode(),
            }
        )
    return out


def drop_partitions_before(nodes: Sequence[ClickHouse], day: str) -> list[str]:
    """Drop every receipt-day partition older than ``day`` (``YYYYMMDD``) on every shard.

    Returns the dropped ``shard-url:partition`` names. Idempotent: front-ends may all run it.
    """
    if not (len(day) == 8 and day.isdigit()):
        raise ValueError(f"day must be YYYYMMDD, got {day!r}")
    dropped = []
    for node in nodes:
        _, rows = node.rows(
            f"SELECT DISTINCT partition FROM system.parts WHERE active AND "
            f"database = '{DATABASE}' AND table = 'events_local'"
        )
        for (part,) in rows:
            name = str(part).strip("'")
            if name.isdigit() and name < day:
                node.execute(f"ALTER TABLE {DATABASE}.events_local DROP PARTITION {name}")
                dropped.append(f"{node.url}:{name}")
    return dropped
