"""Newest-first pages on ClickHouse descend through time windows (index/chstore.py): across
window edges, equal event times, front-ends, shards, time bounds and stale table statistics,
the pages are exactly the newest-first order, each event once, with the total on every page."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from index import EventStore
from index.chquery import compile_query
from index.chship import Shipper
from index.chstore import ClusterEvents
from index.clickhouse import Cell, ClickHouse
from tests.cluster.test_ship import spread_endpoints
from tests.support.events import gene_event

BASE = datetime(2025, 3, 1, tzinfo=UTC)


class Recording(ClickHouse):
    """A reader that keeps the SQL it ran (to see the windows)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.sql: list[str] = []

    def rows(
        self, sql: str, *, settings: Any = None, timeout: float | None = None
    ) -> tuple[list[str], list[list[Cell]]]:
        self.sql.append(sql)
        return super().rows(sql, settings=settings, timeout=timeout)


def _when(i: int) -> str:
    # three events per instant (ties), instants 7 minutes apart, over about a day
    return (BASE + timedelta(minutes=7 * (i // 3))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ship(root: Path, shards: list[ClickHouse], tag: str, frontend: str, idx: range) -> None:
    """Events ``idx`` (CommandLine ``tag n<i>``) journaled and shipped as ``frontend``."""
    eps = spread_endpoints(tag, 2, len(shards))
    with EventStore(root, fsync=False, index_process=False) as store:
        for b, start in enumerate(range(idx.start, idx.stop, 5)):
            events = [
                gene_event(1, {"CommandLine": f"{tag} n{i}"}, time=_when(i))
                for i in range(start, min(start + 5, idx.stop))
            ]
            store.append(events, endpoint=eps[b % 2], batch_id=f"{frontend}-{b}")
        shipper = Shipper(store.journal, shards, frontend=frontend, state_path=root / "ship.json")
        while shipper.lag():
            shipper.ship_once()


@pytest.fixture(scope="module")
def tagged(
    shards: list[ClickHouse], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[ClickHouse]]]:
    """60 events with equal times in threes, from two front-ends, on both shards."""
    tag = f"pg{uuid.uuid4().hex[:10]}"
    base = tmp_path_factory.mktemp("pages")
    _ship(base / "a", shards, tag, f"{tag}-a", range(0, 30))
    _ship(base / "b", shards, tag, f"{tag}-b", range(30, 60))
    yield tag, shards


def _oracle(reader: ClickHouse, query: str, extra: str = "") -> list[dict[str, Any]]:
    """The whole newest-first order, by one sorted query."""
    _, rows = reader.rows(
        f"SELECT raw FROM heron.events WHERE ({compile_query(query)}){extra} "
        "ORDER BY ts_us DESC, frontend DESC, seq DESC"
    )
    return [orjson.loads(str(r[0])) for r in rows]


def _walk(store: ClusterEvents, query: str, limit: int, **kw: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    expected_total = store.count(query, **kw)
    while True:
        page = store.search(query, limit=limit, cursor=cursor, **kw)
        assert page.total == expected_total
        assert len(page.events) <= limit
        out += page.events
        cursor = page.next_cursor
        if cursor is None:
            return out
        assert len(page.events) == limit


@pytest.mark.parametrize("limit", [1, 3, 7, 60])
@pytest.mark.parametrize("first_window", [1e-4, 4.0])
def test_pages_are_the_newest_first_order_across_windows(
    tagged: tuple[str, list[ClickHouse]], limit: int, first_window: float
) -> None:
    tag, shards = tagged
    reader = Recording(shards[0].url)
    store = ClusterEvents(reader, first_window=first_window)
    expected = _oracle(shards[1], tag)
    assert len(expected) == 60
    assert _walk(store, tag, limit) == expected
    windows = [s for s in reader.sql if "ORDER BY ts_us DESC" in s]
    pages = -(-len(expected) // limit)
    if first_window < 1:  # not vacuous: pages were read window by window
        assert len(windows) > pages and sum("ts_us >" in s for s in windows) >= pages - 1


@pytest.mark.parametrize("first_window", [1e-4, 4.0])
def test_time_bounds_and_ties_at_the_bounds(
    tagged: tuple[str, list[ClickHouse]], first_window: float
) -> None:
    tag, shards = tagged
    store = ClusterEvents(shards[0], first_window=first_window)
    since, until = _when(12), _when(41)  # both instants hold three events (ties)
    got = _walk(store, tag, 4, since=since, until=until)
    lo = int((BASE + timedelta(minutes=7 * 4)).timestamp() * 1e6)
    hi = int((BASE + timedelta(minutes=7 * 13)).timestamp() * 1e6)
    expected = _oracle(shards[1], tag, f" AND ts_us >= {lo} AND ts_us <= {hi}")
    assert len(expected) == 30
    assert got == expected


def test_stale_statistics_never_hide_events(shards: list[ClickHouse], tmp_path: Path) -> None:
    tag = f"st{uuid.uuid4().hex[:10]}"
    _ship(tmp_path / "a", shards, tag, f"{tag}-a", range(0, 20))
    store = ClusterEvents(shards[0], first_window=1e-4)
    assert len(_walk(store, tag, 7)) == 20  # the table's time range is now cached
    # Newer and older than every event the statistics saw, shipped afterwards.
    late = EventStore(tmp_path / "b", fsync=False, index_process=False)
    with late:
        late.append(
            [
                gene_event(1, {"CommandLine": f"{tag} new"}, time="2031-01-01T00:00:00.000000Z"),
                gene_event(1, {"CommandLine": f"{tag} old"}, time="2001-01-01T00:00:00.000000Z"),
            ],
            endpoint=spread_endpoints(tag, 2, len(shards))[1],
            batch_id="late",
        )
        shipper = Shipper(
            late.journal, shards, frontend=f"{tag}-b", state_path=tmp_path / "ship.json"
        )
        while shipper.lag():
            shipper.ship_once()
    got = _walk(store, tag, 7)
    assert got == _oracle(shards[1], tag)
    assert len(got) == 22
    assert "new" in str(got[0]) and "old" in str(got[-1])


def test_an_empty_result_and_an_empty_window(shards: list[ClickHouse]) -> None:
    store = ClusterEvents(shards[0], first_window=1e-4)
    page = store.search(f"nothing{uuid.uuid4().hex}", limit=10)
    assert (page.events, page.next_cursor, page.total) == ([], None, 0)
    far = store.search("", since="2099-01-01", limit=10)
    assert (far.events, far.total) == ([], 0)
