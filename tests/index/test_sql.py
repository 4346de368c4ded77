"""Read-only analyst SQL: one SELECT, no file access, timeout, row cap, errors translated."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from index import EndpointRef, EventStore, IndexQueryError, SqlError
from tests.index.conftest import sysmon

MakeStore = Callable[..., EventStore]


def test_select_returns_columns_and_rows(corpus_store: EventStore) -> None:
    result = corpus_store.sql(
        "SELECT channel, count(*) AS n FROM events GROUP BY 1 ORDER BY n DESC"
    )
    assert result.columns == ["channel", "n"]
    assert result.rows[0][1] >= result.rows[-1][1]
    assert not result.truncated


def test_row_cap_sets_truncated(corpus_store: EventStore) -> None:
    result = corpus_store.sql("SELECT seq FROM events ORDER BY seq", max_rows=7)
    assert [r[0] for r in result.rows] == [1, 2, 3, 4, 5, 6, 7]
    assert result.truncated


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM events",
        "INSERT INTO events (seq) VALUES (1)",
        "DROP TABLE events",
        "UPDATE events SET hostname = 'x'",
        "COPY events TO '/tmp/heron-leak.csv'",
        "ATTACH '/tmp/other.duckdb' AS o",
        "SET lock_configuration = false",
        "PRAGMA version",
        "SELECT 1; DELETE FROM events",
    ],
)
def test_writes_and_side_effects_are_refused(corpus_store: EventStore, sql: str) -> None:
    before = corpus_store.sql("SELECT count(*) FROM events").rows
    with pytest.raises(SqlError):
        corpus_store.sql(sql)
    assert corpus_store.sql("SELECT count(*) FROM events").rows == before


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
    ],
)
def test_file_access_is_disabled(corpus_store: EventStore, sql: str) -> None:
    with pytest.raises(SqlError, match="not allowed|SQL failed"):
        corpus_store.sql(sql)


def test_timeout_interrupts_long_queries(corpus_store: EventStore) -> None:
    with pytest.raises(SqlError, match="timeout"):
        corpus_store.sql("SELECT count(*) FROM range(100000000000) a, range(10) b", timeout=0.3)
    assert corpus_store.sql("SELECT 1").rows == [(1,)]  # the store still answers


def test_syntax_errors_are_sql_errors(corpus_store: EventStore) -> None:
    with pytest.raises(SqlError) as info:
        corpus_store.sql("SELEC nonsense")
    assert isinstance(info.value, IndexQueryError) and isinstance(info.value, ValueError)
    assert info.value.__cause__ is not None


def test_rows_keep_every_value_exactly(make_store: MakeStore) -> None:
    """Rows go to DuckDB as JSON (tables.py): quotes, backslashes, control characters,
    non-ASCII, long strings, NULLs, lists and microsecond times come back unchanged."""
    tricky = 'C:\\Users\\"ö"\\\tπ\x01\\' + "x" * 70_000
    event = sysmon(
        tricky,
        'cmd /c echo "a\\b" ☃',
        when="2024-03-01T10:00:00.123456Z",
        extra={"User": "NT AUTHORITY\\SYSTEM", "Hashes": "SHA256=" + "AB" * 32},
    )
    event["Event"]["Detection"] = {"Signature": ['s"1', "s\\2"], "Criticality": 7}
    store = make_store()
    store.append([event], endpoint=EndpointRef("ep-ü", "HÖST"))
    store.flush()
    row = store.sql(
        "SELECT image, command_line, user, sha256, md5, signatures, criticality, "
        "detection, ts, endpoint, hostname, event_id, parent_image FROM events"
    ).rows
    assert row == [
        (
            tricky,
            'cmd /c echo "a\\b" ☃',
            "NT AUTHORITY\\SYSTEM",
            "ab" * 32,
            None,
            ['s"1', "s\\2"],
            7,
            True,
            datetime(2024, 3, 1, 10, 0, 0, 123456),
            "ep-ü",
            "HÖST",
            1,
            None,
        )
    ]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM checkpoint()",
        "SELECT * FROM duckdb_settings()",
        "SELECT * FROM pragma_database_size()",
        "SELECT current_setting('allowed_paths')",
        "SELECT register_external_resource_type('x')",
        "EXPLAIN SELECT * FROM duckdb_databases()",
        "WITH s AS (SELECT * FROM duckdb_extensions()) SELECT * FROM s",
        "SELECT * FROM events WHERE hostname IN (SELECT path FROM duckdb_databases())",
    ],
)
def test_only_allowlisted_table_functions(corpus_store: EventStore, sql: str) -> None:
    with pytest.raises(SqlError, match="not allowed"):
        corpus_store.sql(sql)


def test_allowed_functions_and_clauses_still_work(corpus_store: EventStore) -> None:
    res = corpus_store.sql(
        "WITH r AS (SELECT * FROM range(3) t(i)) SELECT count(*), max(i) FROM r, "
        "unnest([1, 2]) u(x) WHERE i IN (SELECT * FROM generate_series(0, 5))"
    )
    assert res.rows == [(6, 2)]
    assert corpus_store.sql("EXPLAIN SELECT count(*) FROM events").rows


def test_errors_carry_no_server_paths(corpus_store: EventStore) -> None:
    from index.sqlguard import scrub

    path = corpus_store.tables._path
    assert scrub(f"IO Error: {path}.wal locked", path) == "IO Error: <data>.wal locked"
    with pytest.raises(SqlError) as info:
        corpus_store.sql(f"SELECT * FROM '{path}.rows.json'")
    assert path not in str(info.value)


def test_result_byte_cap_and_timeout_cover_conversion(corpus_store: EventStore) -> None:
    import os
    import time

    def rss() -> int:
        with open(f"/proc/{os.getpid()}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    before = rss()
    res = corpus_store.sql(
        "SELECT range(1000) FROM range(5000)",
        max_rows=100_000,
        max_bytes=4 * 1024 * 1024,
        timeout=60.0,
    )
    assert res.truncated and 1000 < len(res.rows) < 1100  # 3.9 KB of JSON per row
    res = corpus_store.sql(
        "SELECT list(range(1000)) FROM range(5000)",  # one 19 MB row
        max_bytes=4 * 1024 * 1024,
        timeout=60.0,
    )
    assert res.truncated and res.rows == []
    assert rss() - before < 512 * 1024 * 1024
    # the query: 200 after 12.5 s and +4.8 GB; now the timeout covers the fetch too
    start = time.monotonic()
    # either bound may end it first: the timeout, or DuckDB's locked memory_limit
    with pytest.raises(SqlError, match="timeout|Out of Memory"):
        corpus_store.sql(
            "SELECT list(range(1000)) FROM range(40000)", max_rows=100_000, timeout=1.0
        )
    assert time.monotonic() - start < 8
