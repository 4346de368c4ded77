"""The search side of the event store: queries over the Tantivy index (any thread)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
import tantivy

from index.errors import IndexQueryError, StoreError
from index.paging import MAX_LIMIT, keyset_page
from index.query import QueryTranslator
from index.results import SearchPage, decode_cursor, encode_cursor
from index.schema import to_micros
from index.timewin import TimeLike, parse_datetime

__all__ = ["MAX_LIMIT", "Reader"]

Q = tantivy.Query
Occur = tantivy.Occur
_ITER_WINDOW = 20_000
_Hit = tuple[int, int, tantivy.DocAddress]  # (event time, seq, document)


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
        """``EventStore.search``: keyset pages on event time (``index.paging``); the cursor
        holds the last page's time and the seqs seen at that time (skipped on the next)."""
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
        counted = 0

        def fetch(n: int) -> list[_Hit]:
            nonlocal counted
            try:
                result = searcher.search(
                    Q.boolean_query(clauses),
                    n + len(seen),
                    count=total < 0,
                    order_by_field="ts",
                    order=tantivy.Order.Desc,
                )
            except ValueError as ex:
                raise IndexQueryError(f"search failed: {ex}", query=query) from ex
            if total < 0:
                counted = int(result.count or 0)  # type: ignore[attr-defined]  # NOTE: stub lacks it
            seqs = [
                int(s or 0)
                for s in searcher.fast_field_values("seq", [addr for _, addr in result.hits])
            ]
            hits = [
                (key, seq, addr)
                for (key, addr), seq in zip(result.hits, seqs, strict=True)
                if seq not in seen
            ][:n]
            # The page (all but the extra hit) in (time, seq) order, newest first.
            return sorted(hits[: n - 1], key=lambda h: (h[0], h[1]), reverse=True) + hits[n - 1 :]

        def cursor_after(page: Sequence[_Hit], total: int) -> str:
            last_ts = page[-1][0]
            at_boundary = [s for k, s, _ in page if k == last_ts]
            if page[0][0] == last_ts:
                at_boundary += list(seen)
            return encode_cursor(last_ts, at_boundary, total)

        return keyset_page(
            limit,
            total,
            fetch=fetch,
            count=lambda: counted,
            load=lambda page: [_stored_event(searcher, addr) for _, _, addr in page],
            cursor_after=cursor_after,
        )

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
