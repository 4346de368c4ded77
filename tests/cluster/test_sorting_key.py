"""The events table is sorted by time first and still folds an agent's retry that reached
another front-end (index/clickhouse.py SORTING_KEY; docs/cluster.md, exactly-once)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from index import EndpointRef, EventStore
from index.chship import Shipper
from index.clickhouse import SORTING_KEY, ClickHouse, ClickHouseError, as_int, local_table_ddl
from tests.support.events import gene_event


def test_the_sorting_key_starts_with_time(shards: list[ClickHouse]) -> None:
    assert SORTING_KEY.startswith("(ts_us, ")
    for shard in shards:
        ddl = str(shard.scalar("SHOW CREATE TABLE heron.events_local"))
        assert f"ORDER BY {SORTING_KEY}" in ddl, ddl


def test_a_retry_through_another_front_end_is_folded(
    shards: list[ClickHouse], tmp_path: Path
) -> None:
    tag = f"rt{uuid.uuid4().hex[:10]}"
    endpoint = EndpointRef(f"{tag}-ep", "HOST-R")
    events = [
        gene_event(1, {"CommandLine": f"{tag} {i}"}, time=f"2025-05-0{1 + i}T10:00:00.000000Z")
        for i in range(5)
    ]
    # no background merge may fold the two copies before the plain count below
    for shard in shards:
        shard.execute("SYSTEM STOP MERGES heron.events_local")
    try:
        for frontend in ("a", "b"):  # the same agent batch acknowledged by two front-ends
            with EventStore(tmp_path / frontend, fsync=False, index_process=False) as store:
                store.append(events, endpoint=endpoint, batch_id="retried")
                shipper = Shipper(
                    store.journal,
                    shards,
                    frontend=f"{tag}-{frontend}",
                    state_path=tmp_path / frontend / "ship.json",
                )
                while shipper.lag():
                    shipper.ship_once()
        where = f"endpoint = '{endpoint.uuid}'"
        rows = sum(
            as_int(s.scalar(f"SELECT count() FROM heron.events_local WHERE {where}"))
            for s in shards
        )
        final = sum(
            as_int(s.scalar(f"SELECT count() FROM heron.events_local FINAL WHERE {where}"))
            for s in shards
        )
        assert (rows, final) == (10, 5)
    finally:
        for shard in shards:
            shard.execute("SYSTEM START MERGES heron.events_local")


def test_a_time_window_reads_only_its_granules(shards: list[ClickHouse]) -> None:
    """The primary index prunes a window (and a page's raw fetch) on 18.16, which has no
    skipping indexes: ``max_rows_to_read`` fails the query if it scans the table."""
    node = shards[0]
    node.execute("CREATE DATABASE IF NOT EXISTS heron_key")
    node.execute("DROP TABLE IF EXISTS heron_key.t")
    node.execute(local_table_ddl("heron_key.t"))
    # 200,000 events one second apart, from 50 endpoints, in batches of 100
    node.execute(
        "INSERT INTO heron_key.t (frontend, seq, ts_us, endpoint, batch_id, batch_idx) "
        "SELECT 'fe', number, toInt64(1700000000000000 + number * 1000000), "
        "concat('ep', toString(number % 50)), toString(intDiv(number, 100)), number % 100 "
        "FROM numbers(200000)"
    )
    bounded = {"max_rows_to_read": 10_000, "read_overflow_mode": "throw"}
    t0, second = 1_700_000_000_000_000, 1_000_000
    window = f"ts_us > {t0 + 150_000 * second} AND ts_us <= {t0 + 152_000 * second}"
    _, rows = node.rows(f"SELECT count() FROM heron_key.t WHERE {window}", settings=bounded)
    assert as_int(rows[0][0]) == 2000
    _, rows = node.rows(
        f"SELECT seq FROM heron_key.t PREWHERE ts_us >= {t0 + 150_000 * second} AND ts_us <= "
        f"{t0 + 150_099 * second} AND (endpoint, batch_id, batch_idx) "
        "IN (('ep0', '1500', 0), ('ep49', '1500', 99))",
        settings=bounded,
    )
    assert sorted(as_int(r[0]) for r in rows) == [150000, 150099]
    with pytest.raises(ClickHouseError, match="[Ll]imit for rows"):
        node.rows("SELECT count() FROM heron_key.t WHERE endpoint = 'ep3'", settings=bounded)
    node.execute("DROP TABLE heron_key.t")
