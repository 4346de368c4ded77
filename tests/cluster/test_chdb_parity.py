"""The query compiler's SQL on current ClickHouse (chdb, in process): same counts as the
embedded store on the real corpus. The ClickHouse 18.16 side is test_query_parity.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from index import EventStore
from index.chquery import compile_query, quote
from index.clickhouse import local_table_ddl, record_rows
from tests.cluster.test_query_parity import QUERIES
from tests.index.conftest import ENDPOINTS

chdb_session = pytest.importorskip("chdb.session", reason="chdb is not installed (pip: chdb)")


@pytest.fixture(scope="module")
def current_ch(corpus_store: EventStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("chdb")
    rows_file = root / "rows.jsonl"
    with open(rows_file, "wb") as fh:
        for record in corpus_store.journal.read():
            for row in record_rows(record, "corpus"):
                fh.write(orjson.dumps(row) + b"\n")
    sess = chdb_session.Session(str(root / "db"))
    sess.query("CREATE DATABASE IF NOT EXISTS heron")
    sess.query(local_table_ddl("heron.events"))
    sess.query(f"INSERT INTO heron.events SELECT * FROM file({quote(str(rows_file))}, JSONEachRow)")
    yield sess
    sess.close()


def _count(sess: Any, query: str) -> int:
    eps = ", ".join(quote(ep.uuid) for ep in ENDPOINTS)
    out = sess.query(
        f"SELECT count() FROM heron.events WHERE ({compile_query(query)}) AND endpoint IN ({eps})",
        "CSV",
    )
    return int(str(out).strip())


def test_current_clickhouse_version(current_ch: Any) -> None:
    major = int(str(current_ch.query("SELECT version()", "CSV")).strip().strip('"').split(".")[0])
    assert major >= 23


@pytest.mark.parametrize("query", QUERIES)
def test_counts_match_the_embedded_store_on_current_clickhouse(
    query: str, corpus_store: EventStore, current_ch: Any
) -> None:
    embedded = sum(corpus_store.count(query, endpoint=ep.uuid) for ep in ENDPOINTS)
    assert _count(current_ch, query) == embedded


def test_rows_file_is_the_whole_corpus(current_ch: Any, corpus_store: EventStore) -> None:
    assert _count(current_ch, "") == corpus_store.count() > 0
