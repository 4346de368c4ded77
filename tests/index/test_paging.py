"""index/paging.py: the one newest-first page loop of the embedded and the cluster store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from index.paging import MAX_LIMIT, clamp_limit, keyset_page


class Source:
    """Keys 99..0 (newest first) after an integer cursor; counts its calls."""

    def __init__(self, keys: int = 100) -> None:
        self.keys = list(range(keys - 1, -1, -1))
        self.counts = 0
        self.asked: list[int] = []

    def page(self, limit: int, cursor: str | None = None) -> Any:
        after, total = (None, -1) if cursor is None else map(int, cursor.split(":"))

        def fetch(n: int) -> list[int]:
            self.asked.append(n)
            return [k for k in self.keys if after is None or k < after][:n]

        def count() -> int:
            self.counts += 1
            return len(self.keys)

        def load(page: Sequence[int]) -> list[dict[str, Any]]:
            return [{"k": k} for k in page]

        return keyset_page(
            limit,
            total,
            fetch=fetch,
            count=count,
            load=load,
            cursor_after=lambda page, total: f"{page[-1]}:{total}",
        )


def test_pages_walk_every_key_once_with_the_total_counted_once() -> None:
    src = Source()
    seen: list[int] = []
    cursor = None
    while True:
        page = src.page(30, cursor)
        assert page.total == 100
        seen += [e["k"] for e in page.events]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == src.keys
    assert src.counts == 1 and src.asked == [31] * 4


def test_a_first_page_that_holds_every_match_is_its_own_total() -> None:
    src = Source(12)
    page = src.page(12)
    assert (len(page.events), page.next_cursor, page.total, src.counts) == (12, None, 12, 0)
    page = src.page(11)  # one more key exists: a next page and a counted total
    assert (len(page.events), page.next_cursor, page.total, src.counts) == (11, "1:12", 12, 1)


@pytest.mark.parametrize(("asked", "got"), [(0, 1), (-5, 1), (10**9, MAX_LIMIT), (50, 50)])
def test_limits_are_clamped(asked: int, got: int) -> None:
    assert clamp_limit(asked) == got
    src = Source(5)
    src.page(asked)
    assert src.asked == [got + 1]
