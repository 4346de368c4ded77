"""Cursor paging of the audit log, IoCs and users: complete, in order, no repeats; bad cursors
refused. The next page's cursor is in X-Heron-Next-Cursor so WHIDS clients keep a plain list."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

import pytest

from appliance.api.common import NEXT_CURSOR

from .conftest import Env


def _walk(env: Env, path: str, limit: int, **params: Any) -> list[Any]:
    items: list[Any] = []
    cursor = None
    for _ in range(1000):
        query = dict(params, limit=str(limit), **({"cursor": cursor} if cursor else {}))
        res = env.a("GET", path, params=query)
        assert res.status_code == 200, res.text
        page = res.json["data"]
        assert len(page) <= limit
        items += page
        cursor = res.headers.get(NEXT_CURSOR)
        if not cursor:
            return items
    raise AssertionError("paging never ended")


def _iocs(n: int, source: str) -> list[dict[str, str]]:
    return [
        {
            "uuid": str(uuidlib.uuid4()),
            "guuid": str(uuidlib.uuid4()),
            "source": source,
            "value": f"{i:064x}",
            "type": "sha256",
        }
        for i in range(n)
    ]


def test_iocs_page_in_order_with_filters(env: Env) -> None:
    for batch in range(3):  # three upserts: three `created` values, ties broken by uuid
        assert env.a("POST", "/iocs", json=_iocs(10, f"feed{batch % 2}")).status_code == 200
        env.ctx.clock.now += 1  # type: ignore[attr-defined]
    everything = env.a("GET", "/iocs").json["data"]
    assert len(everything) == 30
    assert _walk(env, "/iocs", 7) == everything
    feed1 = _walk(env, "/iocs", 4, source="feed1")
    assert feed1 == [i for i in everything if i["source"] == "feed1"] and len(feed1) == 10


def test_audit_pages_newest_first(env: Env) -> None:
    for i in range(25):
        env.ctx.store.audit.record(1000.0 + i // 5, "alice", "admin", "test", f"t{i:02d}")
    env.ctx.store.db.write(lambda cur: None)
    whole = env.a("GET", "/audit", params={"limit": "1000"}).json["data"]
    tests = [r for r in whole if r["action"] == "test"]
    assert len(tests) == 25 and [r["ts"] for r in tests] == sorted(
        (r["ts"] for r in tests), reverse=True
    )
    walked = [r for r in _walk(env, "/audit", 6) if r["action"] == "test"]
    assert walked == tests


def test_users_page(env: Env) -> None:
    for i in range(12):
        assert env.a("POST", "/users", json={"identifier": f"user{i:02d}"}).status_code == 200
    whole = env.a("GET", "/users").json["data"]
    assert len(whole) >= 12
    assert _walk(env, "/users", 5) == whole


@pytest.mark.parametrize("path", ["/iocs", "/audit", "/users"])
def test_bad_cursor_and_limit_are_refused(env: Env, path: str) -> None:
    for cursor in ("not-base64!", "WzEsMiwzXQ", "eyJhIjoxfQ"):  # junk, [1,2,3], {"a":1}
        res = env.a("GET", path, params={"cursor": cursor})
        assert res.status_code in (400, 422) and "cursor" in res.text, (cursor, res.text)
    assert env.a("GET", path, params={"limit": "0"}).status_code in (400, 422)
