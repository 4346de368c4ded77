"""The search side of the event store: queries over the Tantivy index (any thread)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import tantivy

from index.errors import IndexQueryError, StoreError
from index.query import QueryTranslator
from index.results import SearchPage, decode_cursor, encode_cursor
from index.schema import to_micros
from index.timewin import TimeLike, parse_datetime

__all__ = ["MAX_LIMIT", "Reader"]

Q = tantivy.Query
Occur = tantivy.Occur
_ITER_WINDOW = 20_000
MAX_LIMIT = 10_000


def _stored_event(searcher: tantivy.Searcher, addr: tantivy.DocAddress) -> dict[str, Any]:
    raw = searcher.doc(addr).get_first("raw")
    if not isinstance(raw, bytes):
        raise StoreError("index document without its stored event")
    event: dict[str, Any] = orjson.loads(raw)
    return event


class Reader:
    """Searches, counts and walks the committed events of one index."""

    def __init__(self, index: tantivy.Index) -> None:
        self._index = index
        self._schema = index.schema
        self._translator = QueryTranslator(self._schema)

    def _filters(
        self,
        query: str,
        since: TimeLike,
        until: TimeLike,
        endpoint: str | None,
        detections_only: bool,
    ) -> list[tuple[tantivy.Occur, tantivy.Query]]:
        clauses = [(Occur.Must, self._translator.translate(query))]
        start = None if since in (None, "") else parse_datetime(since)
        end = None if until in (None, "") else parse_datetime(until)
        if start is not None and end is not None and start > end:
            raise IndexQueryError("since is after until")
        if start is not None or end is not None:
            clauses.append(
                (
                    Occur.Must,
                    Q.range_query(
                        self._schema,
                        "ts",
                        tantivy.FieldType.Integer,
                        None if start is None else to_micros(start),
                        None if end is None else to_micros(end),
                    ),
                )
            )
        if endpoint:
            clauses.append((Occur.Must, Q.term_query(self._schema, "endpoint", endpoint.lower())))
        if detections_only:
            clauses.append((Occur.Must, Q.term_query(self._schema, "det", 1)))
        return clauses

    def search(
        self,
        query: str,
        since: TimeLike,
        until: TimeLike,
        endpoint: str | None,
        detections_only: bool,
        limit: int,
        cursor: str | None,
    ) -> SearchPage:
        """``EventStore.search``."""
        limit = max(1, min(int(limit), MAX_LIMIT))
        clauses = self._filters(query, since, until, endpoint, detections_only)
        seen: set[int] = set()
        total = -1
        if cursor:
            boundary, seen, total = decode_cursor(cursor)
            clauses.append(
                (
                    Occur.Must,
                    Q.range_query(self._schema, "ts", tantivy.FieldType.Integer, None, boundary),
                )
            )
        searcher = self._index.searcher()
        try:
            result = searcher.search(
                Q.boolean_query(clauses),
                limit + 1 + len(seen),
                count=total < 0,
                order_by_field="ts",
                order=tantivy.Order.Desc,
            )
        except ValueError as ex:
            raise IndexQueryError(f"search failed: {ex}", query=query) from ex
        if total < 0:
            total = int(result.count or 0)  # type: ignore[attr-defined]  # NOTE: stub lacks it
        seqs = [
            int(s or 0)
            for s in searcher.fast_field_values("seq", [addr for _, addr in result.hits])
        ]
        picked = [
            (key, seq, addr)
            for (key, addr), seq in zip(result.hits, seqs, strict=True)
            if seq not in seen
        ][:limit]
        picked.sort(key=lambda h: (h[0], h[1]), reverse=True)
        events = [_stored_event(searcher, addr) for _, _, addr in picked]
        next_cursor = None
        if len(picked) == limit and len(result.hits) > limit + len(seen):
            last_ts = picked[-1][0]
            at_boundary = [s for k, s, _ in picked if k == last_ts]
            if picked[0][0] == last_ts:
                at_boundary += list(seen)
            next_cursor = encode_cursor(last_ts, at_boundary, total)
        return SearchPage(events, next_cursor, total)

    def count(
        self,
        query: str,
        since: TimeLike,
        until: TimeLike,
        endpoint: str | None,
        detections_only: bool,
    ) -> int:
        """``EventStore.count``."""
        clauses = self._filters(query, since, until, endpoint, detections_only)
        result = self._index.searcher().search(Q.boolean_query(clauses), 1, count=True)
        return int(result.count or 0)  # type: ignore[attr-defined]

    def iter_events(
        self,
        query: str,
        since: TimeLike,
        until: TimeLike,
        endpoint: str | None,
        detections_only: bool,
        *,
        first_seq: int,
        next_seq: Callable[[], int],
    ) -> Iterator[dict[str, Any]]:
        """Every match with ``first_seq`` <= seq < ``next_seq()``, in store order.

        Performance: the store is walked in windows of ``_ITER_WINDOW`` sequence numbers (an
        inverted-index range on ``seq``), so a hunt over N events costs O(N), not O(N²).
        """
        base = self._filters(query, since, until, endpoint, detections_only)
        lo = first_seq
        while lo < next_seq():
            hi = lo + _ITER_WINDOW - 1
            window = Q.range_query(
                self._schema, "seq", tantivy.FieldType.Unsigned, lo, hi, use_inverted_index=True
            )
            searcher = self._index.searcher()
            hits = searcher.search(
                Q.boolean_query([*base, (Occur.Must, window)]),
                _ITER_WINDOW,
                count=False,
                order_by_field="seq",
                order=tantivy.Order.Asc,
            ).hits
            for _, addr in hits:
                yield _stored_event(searcher, addr)
            lo = hi + 1
