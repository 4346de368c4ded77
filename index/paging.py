"""Newest-first keyset pages: the one page-building loop of both event stores.

The embedded store (``index.reader``, Tantivy) and the cluster store (``index.chstore``,
ClickHouse) differ in how they find the keys after a cursor and in what their cursors hold;
what a page is — ``limit`` keys, a next cursor only when a further key exists, the total
counted on the first page only — is written here once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from index.results import SearchPage

__all__ = ["MAX_LIMIT", "clamp_limit", "keyset_page"]

MAX_LIMIT = 10_000

K = TypeVar("K")


def clamp_limit(limit: int) -> int:
    """A page size within ``1..MAX_LIMIT``."""
    return max(1, min(int(limit), MAX_LIMIT))


def keyset_page(
    limit: int,
    total: int,
    *,
    fetch: Callable[[int], Sequence[K]],
    count: Callable[[], int],
    load: Callable[[Sequence[K]], list[dict[str, Any]]],
    cursor_after: Callable[[Sequence[K], int], str],
) -> SearchPage:
    """One page of ``limit`` (clamped) events, newest first.

    Args:
        total: The total a cursor carries; negative on the first page (then counted).
        fetch: ``fetch(n)``: up to ``n`` keys after the cursor, the page's first in page
            order; asked for one key more than the page, which only says a next page exists.
        count: The number of matches (first page only, and only when there is a next page:
            a first page that holds every match is its own total).
        load: The events of the page's keys.
        cursor_after: ``cursor_after(page_keys, total)``: the cursor of the next page.
    """
    limit = clamp_limit(limit)
    keys = list(fetch(limit + 1))
    more = len(keys) > limit
    page = keys[:limit]
    if total < 0:
        total = count() if more else len(keys)
    return SearchPage(load(page), cursor_after(page, total) if more else None, total)
