"""Cluster mode, read side: search, count, SQL hunting and retro-hunt input over ClickHouse.

Same API and semantics as ``EventStore`` (query language, time windows, newest first,
cursors), reading the ``heron.events`` Distributed table from any front-end. Event identity
is ``(frontend, seq)``; pages are keyset pages on ``(ts_us, frontend, seq)`` descending.

Newest first without sorting every match: ClickHouse 18.16 cannot read a table in its order
(``optimize_read_in_order`` is 19.14+), so ``ORDER BY ts_us DESC LIMIT n`` reads every match.
A page instead descends through time windows below the cursor (``_newest``): the newest
window first, sized from the table's density to hold a few pages, then one sized by the
matches found (none found: straight to the rest), then the rest in one query; the last
window is open below, so stale table statistics only cost a query, never a match. The table
is sorted by time first (``index.clickhouse.SORTING_KEY``), so a window reads its own
granules only.
"""

from __future__ import annotations

import base64
import math
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson

from index.chquery import compile_query, quote
from index.clickhouse import (
    DATABASE,
    Cell,
    ClickHouse,
    ClickHouseError,
    as_int,
    has_skip_indexes,
)
from index.errors import IndexQueryError, SqlError
from index.paging import keyset_page
from index.results import SearchPage
from index.schema import to_micros
from index.tables import SqlResult
from index.timewin import TimeLike, parse_datetime

__all__ = ["ClusterEvents"]

_ITER_PAGE = 5_000
_KEYS = "ts_us, frontend, seq, endpoint, batch_id, batch_idx"  # a page's keys (``_raw_of``)
FIRST_WINDOW = 4.0  # the newest window holds about this many pages of the whole table's rows
STATS_TTL = 30.0  # seconds the table's time range and row count shape windows
_MAX_WINDOWS = 2  # bounded windows per page; then the rest in one query
_SQL_START = re.compile(r"^\s*(SELECT|WITH|EXPLAIN|SHOW|DESCRIBE|DESC)\b", re.I)


def _encode_cursor(ts_us: int, frontend: str, seq: int, total: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([ts_us, frontend, seq, total])).decode()


def _decode_cursor(cursor: str) -> tuple[int, str, int, int]:
    try:
        ts_us, frontend, seq, total = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        return int(ts_us), str(frontend), int(seq), int(total)
    except (ValueError, TypeError) as ex:
        raise IndexQueryError("invalid cursor") from ex


class ClusterEvents:
    """Events in ClickHouse, read through ``reader`` (any server of the cluster).

    Args:
        reader: The server this front-end queries (its ``heron.events`` spans every shard).
        hunter: The same server as the read-only user (``readonly=1`` profile with limits),
            for analysts' SQL. Defaults to ``reader``'s (then only our checks apply).
        first_window: Pages of the table's rows the newest window of a page holds (tests
            make it tiny so pages cross many windows).
    """

    def __init__(
        self,
        reader: ClickHouse,
        hunter: ClickHouse | None = None,
        *,
        first_window: float = FIRST_WINDOW,
    ) -> None:
        self._reader = reader
        self._hunter = hunter or reader
        self._has_token: bool | None = None  # the reader's version decides (first query)
        self._first_window = first_window
        self._stats_at: tuple[float, tuple[int, int, int]] | None = None

    def _tokens(self) -> bool:
        if self._has_token is None:
            try:
                self._has_token = has_skip_indexes(self._reader.version())
            except ClickHouseError as ex:
                raise IndexQueryError(f"search failed: {ex}") from ex
        return self._has_token

    def _where(
        self,
        query: str,
        since: TimeLike,
        until: TimeLike,
        endpoint: str | None,
        detections_only: bool,
    ) -> str:
        parts = [compile_query(query, has_token=self._tokens())]
        start = None if since in (None, "") else parse_datetime(since)
        end = None if until in (None, "") else parse_datetime(until)
        if start is not None and end is not None and start > end:
            raise IndexQueryError("since is after until")
        if start is not None:
            parts.append(f"ts_us >= {to_micros(start)}")
        if end is not None:
            parts.append(f"ts_us <= {to_micros(end)}")
        if endpoint:
            parts.append(f"endpoint = {quote(endpoint.lower())}")
        if detections_only:
            parts.append("detection = 1")
        return " AND ".join(f"({p})" for p in parts)

    def count(
        self,
        query: str = "",
        *,
        since: TimeLike = None,
        until: TimeLike = None,
        endpoint: str | None = None,
        detections_only: bool = False,
    ) -> int:
        where = self._where(
            query,
            since,
            until,
            endpoint,
            detections_only,
        )
        return as_int(self._read(f"SELECT count() FROM {DATABASE}.events WHERE {where}")[0][0])

    def _stats(self) -> tuple[int, int, int]:
        """The table's (oldest, newest) ``ts_us`` and rows, at most ``STATS_TTL`` old: they
        only size the windows (``_newest`` stays exact whatever they are)."""
        now = time.monotonic()
        if self._stats_at is None or now - self._stats_at[0] > STATS_TTL:
            row = self._read(f"SELECT min(ts_us), max(ts_us), count() FROM {DATABASE}.events")
            stats = (as_int(row[0][0]), as_int(row[0][1]), as_int(row[0][2]))
            self._stats_at = (now, stats)
        return self._stats_at[1]

    def _newest(
        self, where: str, n: int, *, top: int | None, floor: int | None
    ) -> list[list[Cell]]:
        """The first ``n`` keys of ``where``, newest first, by time windows below ``top``.

        Window k covers ``(top - reach_k, top - reach_(k-1)]``; the first is open above (rows
        newer than the statistics) and the last (reaching ``floor``: ``since`` or the oldest
        event, or after ``_MAX_WINDOWS``) open below. Every window's rows are older than the
        previous window's, so the windows' pages in order are the first ``n`` of the whole
        order.
        """
        oldest, newest, rows = self._stats()
        # Windows start at the newest event and stop at the oldest: past those (a far
        # ``until`` or ``since``) they would only be empty.
        top = newest if top is None else min(top, newest)
        floor = oldest if floor is None else max(floor, oldest)
        span = max(1, top - floor)
        # rows per microsecond of the whole table: the first window holds FIRST_WINDOW pages
        density = max(rows, 1) / max(1, newest - oldest)
        reach = max(1, math.ceil(self._first_window * n / density))
        keys: list[list[Cell]] = []
        upper: int | None = None  # the previous window's lower edge
        windows = 0  # bounded windows read
        while True:
            last = reach >= span
            bounds = [where]
            if upper is not None:
                bounds.append(f"ts_us <= {upper}")
            if not last:
                bounds.append(f"ts_us > {top - reach}")
            keys += self._read(
                f"SELECT {_KEYS} FROM {DATABASE}.events WHERE {' AND '.join(bounds)} "
                f"ORDER BY ts_us DESC, frontend DESC, seq DESC LIMIT {n - len(keys)}"
            )
            if last or len(keys) >= n:
                return keys
            upper, windows = top - reach, windows + 1
            if not keys or windows >= _MAX_WINDOWS:
                # Few matches: the rest in one query (what one sorted query over every match
                # costs) rather than many windows, each a query of its own.
                reach = span
                continue
            # From the matches found so far: twice the reach the rest needs, ×2 to ×64.
            grow = 2 * (n - len(keys)) / len(keys) + 1
            reach = math.ceil(reach * min(64.0, max(2.0, grow)))

    def search(
        self,
        query: str = "",
        *,
        since: TimeLike = None,
        until: TimeLike = None,
        endpoint: str | None = None,
        detections_only: bool = False,
        limit: int = 100,
        cursor: str | None = None,
    ) -> SearchPage:
        """Matching events, newest event time first, ``limit`` per page (keyset cursor)."""
        where = self._where(query, since, until, endpoint, detections_only)
        start = None if since in (None, "") else to_micros(parse_datetime(since))
        top = None if until in (None, "") else to_micros(parse_datetime(until))
        total = -1
        if cursor:
            ts_us, frontend, seq, total = _decode_cursor(cursor)
            where = (
                f"{where} AND (ts_us < {ts_us} OR (ts_us = {ts_us} AND (frontend < "
                f"{quote(frontend)} OR (frontend = {quote(frontend)} AND seq < {seq}))))"
            )
            top = ts_us

        def cursor_after(page: Sequence[list[Cell]], total: int) -> str:
            last = page[-1]
            return _encode_cursor(as_int(last[0]), str(last[1]), as_int(last[2]), total)

        return keyset_page(
            limit,
            total,
            fetch=lambda n: self._newest(where, n, top=top, floor=start),
            count=lambda: self.count(
                query, since=since, until=until, endpoint=endpoint, detections_only=detections_only
            ),
            load=self._raw_of,
            cursor_after=cursor_after,
        )

    def _raw_of(self, keys: Sequence[list[Cell]]) -> list[dict[str, Any]]:
        """The events of ``(ts_us, frontend, seq, endpoint, batch_id, batch_idx)`` rows."""
        if not keys:
            return []
        tuples = ", ".join(
            f"({quote(str(k[3]))}, {quote(str(k[4]))}, {as_int(k[5])})" for k in keys
        )
        times = [as_int(k[0]) for k in keys]
        # Performance: sort the keys first, then fetch ``raw`` by key within the page's time
        # range (the primary index's prefix): selecting ``raw`` in the sorted query
        # decompressed it for every granule with a match.
        found = {
            (str(r[0]), as_int(r[1])): str(r[2])
            for r in self._read(
                f"SELECT frontend, seq, raw FROM {DATABASE}.events PREWHERE ts_us >= "
                f"{min(times)} AND ts_us <= {max(times)} AND "
                f"(endpoint, batch_id, batch_idx) IN ({tuples})"
            )
        }
        out: list[dict[str, Any]] = []
        for k in keys:
            raw = found.get((str(k[1]), as_int(k[2])))
            if raw is not None:
                out.append(orjson.loads(raw))
        return out

    def iter_events(
        self,
        *,
        since: TimeLike = None,
        until: TimeLike = None,
        endpoint: str | None = None,
        query: str = "",
        detections_only: bool = False,
        prefilter: Iterable[tuple[str, int | None]] | None = None,
    ) -> Iterator[dict[str, object]]:
        """Every matching event (retro-hunt input), in pages of ``_ITER_PAGE``.

        ``prefilter``: the ``(channel, EventID)`` pairs the hunted rules admit
        (``index.retro.prefilter_of``; EventID ``None``: any ID of the channel), pushed into SQL
        with the time window so only candidate rows leave ClickHouse. Channels compare
        case-insensitively (a superset of the engine's exact test, which runs on every row).
        """
        where = self._where(query, since, until, endpoint, detections_only)
        if prefilter is not None:
            by_channel: dict[str, set[int] | None] = {}
            for ch, eid in prefilter:
                ids = by_channel.setdefault(ch.lower(), set())
                if eid is None or ids is None:
                    by_channel[ch.lower()] = None
                else:
                    ids.add(int(eid))
            pairs = [
                f"lowerUTF8(channel) = {quote(ch)}"
                if ids is None
                else f"(lowerUTF8(channel) = {quote(ch)} AND event_id IN "
                f"({', '.join(str(i) for i in sorted(ids))}))"
                for ch, ids in sorted(by_channel.items())
            ]
            where += " AND (" + (" OR ".join(pairs) or "0") + ")"
        after: tuple[str, int] | None = None
        while True:
            page_where = (
                where
                if after is None
                else (
                    f"{where} AND (frontend > {quote(after[0])} OR (frontend = {quote(after[0])} "
                    f"AND seq > {after[1]}))"
                )
            )
            rows = self._read(
                f"SELECT frontend, seq, raw FROM {DATABASE}.events WHERE "
                f"{page_where} ORDER BY frontend, seq LIMIT {_ITER_PAGE}"
            )
            for row in rows:
                yield orjson.loads(str(row[2]))
            if len(rows) < _ITER_PAGE:
                return
            after = (str(rows[-1][0]), as_int(rows[-1][1]))

    def sql(
        self,
        query: str,
        *,
        timeout: float = 10.0,
        max_rows: int = 10_000,
        max_bytes: int = 16 * 1024 * 1024,
    ) -> SqlResult:
        """One read-only statement as the read-only user, with a timeout, a row and a byte cap.

        Raises:
            SqlError: not one read statement, refused by the server, or over the timeout.
        """
        text = query.strip().rstrip(";")
        if ";" in text or not _SQL_START.match(text):
            raise SqlError("only one SELECT statement is allowed", query=query)
        if re.search(r"\bFORMAT\b|\bINTO\s+OUTFILE\b", text, re.I):
            raise SqlError("FORMAT and INTO OUTFILE are not allowed", query=query)
        try:
            # NOTE: the hunter's profile is readonly=1 (no writes, no setting changes): its
            # max_execution_time / max_result_rows are the server-side bounds; ours below.
            columns, rows = self._hunter.rows(text, timeout=timeout + 5)
        except ClickHouseError as ex:
            msg = str(ex)
            if "TIMEOUT_EXCEEDED" in msg or "Timeout exceeded" in msg or "timed out" in msg:
                raise SqlError(f"query exceeded the {timeout:g} s timeout", query=query) from ex
            raise SqlError(f"SQL failed: {msg}", query=query) from ex
        kept: list[tuple[Any, ...]] = []
        size = 0
        for row in rows[:max_rows]:
            size += len(orjson.dumps(row, default=str))
            if size > max_bytes:  # rows past the byte cap are left out, as the embedded store
                return SqlResult(columns, kept, True)
            kept.append(tuple(row))
        return SqlResult(columns, kept, len(rows) > max_rows)

    def _read(self, sql: str) -> list[list[Cell]]:
        try:
            return self._reader.rows(sql)[1]
        except ClickHouseError as ex:
            raise IndexQueryError(f"search failed: {ex}") from ex
