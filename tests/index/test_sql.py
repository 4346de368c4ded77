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
        "SELECT channel, count(*) AS n FROM events GROUP BY 1 ORDER BY n DESC")
    assert result.columns == ["channel", "n"]
    assert result.rows[0][1] >= result.rows[-1][1]
    assert not result.truncated


def test_row_cap_sets_truncated(corpus_store: EventStore) -> None:
    result = corpus_store.sql("SELECT seq FROM events ORDER BY seq", max_rows=7)
    assert [r[0] for r in result.rows] == [1, 2, 3, 4, 5, 6, 7]
    assert result.truncated


@pytest.mark.parametrize("sql", [
    "DELETE FROM events",
    "INSERT INTO events (seq) VALUES (1)",
    "DROP TABLE events",
    "UPDATE events SET hostname = 'x'",
    "COPY events TO '/tmp/heron-leak.csv'",
    "ATTACH '/tmp/other.duckdb' AS o",
    "SET lock_configuration = false",
    "PRAGMA version",
    "SELECT 1; DELETE FROM events",
])
def test_writes_and_side_effects_are_refused(corpus_store: EventStore, sql: str) -> None:
    before = corpus_store.sql("SELECT count(*) FROM events").rows
    with pytest.raises(SqlError):
        corpus_store.sql(sql)
    assert corpus_store.sql("SELECT count(*) FROM events").rows == before


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM glob('/etc/*')",
])
def test_file_access_is_disabled(corpus_store: EventStore, sql: str) -> None:
    with pytest.raises(SqlError, match="SQL failed"):
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
    event = sysmon(tricky, "cmd /c echo \"a\\b\" ☃", when="2024-03-01T10:00:00.123456Z",
                   extra={"User": "NT AUTHORITY\\SYSTEM", "Hashes": "SHA256=" + "AB" * 32})
    event["Event"]["Detection"] = {"Signature": ["s\"1", "s\\2"], "Criticality": 7}
    store = make_store()
    store.append([event], endpoint=EndpointRef("ep-ü", "HÖST"))
    store.flush()
    row = store.sql("SELECT image, command_line, user, sha256, md5, signatures, criticality, "
                    "detection, ts, endpoint, hostname, event_id, parent_image FROM events").rows
    assert row == [(tricky, "cmd /c echo \"a\\b\" ☃", "NT AUTHORITY\\SYSTEM", "ab" * 32, None,
                    ["s\"1", "s\\2"], 7, True, datetime(2024, 3, 1, 10, 0, 0, 123456),
                    "ep-ü", "HÖST", 1, None)]
