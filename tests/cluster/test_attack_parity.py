"""ATT&CK columns (techniques, tactics) in ClickHouse and ``attack:``/``technique:``/``tactic:``
queries: the same hits as the embedded store (index schema v5), on 18.16 and on chdb."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from index import EndpointRef, EventStore
from index.chquery import compile_query, quote
from index.chship import Shipper
from index.chstore import ClusterEvents
from index.clickhouse import ClickHouse, create_schema, local_table_ddl, record_rows
from tests.cluster.conftest import CLUSTER
from tests.index.conftest import sysmon

EP = EndpointRef("a77ac4-attack-parity", "WS-ATT", "192.0.2.7", "lab")
QUERIES = [
    "attack:T1059",
    "attack:t1059.004",
    "technique:T1140",
    "tactic:execution",
    'tactic:"Defense Evasion"',
    "attack:defense-evasion",
    "attack:T11*",
    "attack:T1059.001",
    "attack:T9999",
    "technique:T1059 AND tactic:execution",
    "NOT attack:T1140",
]


def _events() -> list[dict[str, Any]]:
    hit = sysmon("C:\\x\\sh.exe", "sh -c decode")
    hit["Event"]["Detection"] = {
        "Signature": ["Decode"],
        "Criticality": 7,
        "ATTACK": [
            {"ID": "T1059.004", "Tactic": "execution", "Reference": ""},
            {"ID": "T1140", "Tactic": "Defense Evasion", "Description": "", "Reference": ""},
            "not an object",
        ],
    }
    hit2 = sysmon("C:\\x\\ps.exe", "ps", when="2024-03-01T10:00:01Z")
    hit2["Event"]["Detection"] = {
        "Signature": ["Ps"],
        "Criticality": 3,
        "ATTACK": [{"ID": "T1059", "Tactic": "Execution"}],
    }
    plain = sysmon("C:\\x\\ls.exe", "ls")
    plain["Event"]["Detection"] = {
        "Signature": [],
        "Criticality": 0,
        "ATTACK": [{"ID": "T9999", "Tactic": "x"}],
    }
    return [hit, hit2, plain, sysmon("C:\\x\\other.exe", "T1140 execution")]


@pytest.fixture(scope="module")
def attack_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    store = EventStore(tmp_path_factory.mktemp("attack"), fsync=False)
    store.append(_events(), endpoint=EP)
    store.flush()
    yield store
    store.close()


def test_attack_queries_match_the_embedded_store_on_18_16(
    attack_store: EventStore, shards: list[ClickHouse]
) -> None:
    root = Path(attack_store.root)
    shipper = Shipper(attack_store.journal, shards, frontend="attack", state_path=root / "s.json")
    while shipper.lag():
        shipper.ship_once()
    create_schema(shards, CLUSTER)  # idempotent on an up-to-date schema
    cluster = ClusterEvents(shards[0])
    for query in QUERIES:
        assert cluster.count(query, endpoint=EP.uuid) == attack_store.count(query), query
    assert attack_store.count("attack:T1059") == 2
    _, rows = shards[0].rows(
        "SELECT techniques, tactics FROM heron.events WHERE detection = 1 AND "
        f"endpoint = {quote(EP.uuid)} ORDER BY criticality DESC"
    )
    assert rows == [
        [["T1059.004", "T1140"], ["execution", "defense-evasion"]],
        [["T1059"], ["execution"]],
    ]


def test_an_older_table_gets_the_attack_columns(shards: list[ClickHouse]) -> None:
    node = shards[0]
    node.execute("CREATE DATABASE IF NOT EXISTS heron_old")
    node.execute("DROP TABLE IF EXISTS heron_old.t")
    old = local_table_ddl("heron_old.t").replace(
        "techniques Array(String), tactics Array(String), ", ""
    )
    assert "techniques" not in old
    node.execute(old)
    from index import clickhouse

    clickhouse._add_missing_columns(node, "t", database="heron_old")
    _, rows = node.rows(
        "SELECT name FROM system.columns WHERE database = 'heron_old' AND table = 't'"
    )
    names = [r[0] for r in rows]
    assert names.index("techniques") == names.index("event_hash") + 1
    assert names.index("tactics") == names.index("techniques") + 1


def test_attack_queries_on_current_clickhouse(attack_store: EventStore, tmp_path: Path) -> None:
    chdb_session = pytest.importorskip("chdb.session", reason="chdb is not installed (pip: chdb)")
    rows_file = tmp_path / "rows.jsonl"
    with open(rows_file, "wb") as fh:
        for record in attack_store.journal.read():
            for row in record_rows(record, "attack"):
                fh.write(orjson.dumps(row) + b"\n")
    sess = chdb_session.Session(str(tmp_path / "db"))
    try:
        sess.query("CREATE DATABASE IF NOT EXISTS heron")
        sess.query(local_table_ddl("heron.events"))
        sess.query(
            f"INSERT INTO heron.events SELECT * FROM file({quote(str(rows_file))}, JSONEachRow)"
        )
        count: Callable[[str], int] = lambda q: int(  # noqa: E731
            str(
                sess.query(f"SELECT count() FROM heron.events WHERE {compile_query(q)}", "CSV")
            ).strip()
        )
        for query in QUERIES:
            assert count(query) == attack_store.count(query), query
    finally:
        sess.close()
