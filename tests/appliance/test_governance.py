"""Connection admission: per-source cap, reserve, eviction of the oldest unauthenticated."""

from __future__ import annotations

import logging

import pytest

from appliance.transport.governance import GovernanceLimits, Governor, RateLimitedLog


def test_per_source_cap_counts_only_unauthenticated() -> None:
    gov = Governor(GovernanceLimits(max_connections=100, per_source=3, reserve=10))
    slots = [s for _ in range(3) if (s := gov.admit("10.0.0.1", lambda: None)) is not None]
    assert len(slots) == 3 and gov.admit("10.0.0.1", lambda: None) is None
    assert gov.rejected["per_source"] == 1
    assert gov.admit("10.0.0.2", lambda: None) is not None  # another source
    gov.authenticate(slots[0])  # e.g. a verified client certificate
    assert gov.admit("10.0.0.1", lambda: None) is not None
    gov.release(slots[1])
    gov.release(slots[1])  # idempotent
    assert gov.admit("10.0.0.1", lambda: None) is not None


def test_unauthenticated_pool_evicts_its_oldest_and_leaves_the_reserve() -> None:
    gov = Governor(GovernanceLimits(max_connections=10, per_source=100, reserve=4))
    closed: list[int] = []
    slots = [
        s
        for i in range(6)
        if (s := gov.admit("10.0.0.9", lambda i=i: closed.append(i))) is not None
    ]  # type: ignore[misc]
    assert len(slots) == 6 and closed == []
    assert gov.admit("10.0.0.9", lambda: closed.append(6)) is not None
    assert closed == [0] and gov.rejected["evicted"] == 1
    gov.release(slots[0])  # the evicted handler ends later: no double count
    assert gov.active == 6
    # authenticated connections take the reserve, then the whole cap
    for _ in range(5):  # each arrives unauthenticated, then shows its certificate
        s = gov.admit("10.0.0.8", lambda: None)
        assert s is not None
        gov.authenticate(s)
    assert gov.authenticated == 5 and gov.active == 10 and closed == [0, 1]
    # at the cap: a new connection still gets in, by evicting the oldest unauthenticated one
    assert gov.admit("10.0.0.7", lambda: closed.append(99)) is not None
    assert closed == [0, 1, 2] and gov.active == 10


def test_full_of_authenticated_refuses() -> None:
    gov = Governor(GovernanceLimits(max_connections=2, per_source=10, reserve=1))
    for _ in range(2):
        s = gov.admit("10.0.0.1", lambda: None)
        assert s is not None
        gov.authenticate(s)
    assert gov.admit("10.0.0.1", lambda: None) is None and gov.rejected["cap"] == 1


def test_rate_limited_log(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = RateLimitedLog(logging.getLogger("t"), interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        for _ in range(100):
            log.warning("k", "failed %s", "x")
        now[0] = 11.0
        log.warning("k", "failed %s", "y")
    assert [r.getMessage() for r in caplog.records] == [
        "failed x",
        "failed y (99 similar suppressed)",
    ]


def test_admin_authorizer_reads_the_first_head(env: object) -> None:
    from appliance.console.auth import SESSION_COOKIE
    from appliance.console.wiring import console_for
    from appliance.store import Role
    from appliance.transport.server import admin_authorizer

    ctx = env.ctx  # type: ignore[attr-defined]
    console = console_for(ctx)
    ctx.extensions.add(console)
    sid, _ = console.auth.sessions.create(object(), role=Role.ADMIN.value, name="root")
    authorize = admin_authorizer(ctx)
    key = env.admin_key  # type: ignore[attr-defined]
    assert authorize(b"GET / HTTP/1.1\r\nX-Api-Key: " + key.encode() + b"\r\n\r\n")
    assert authorize(
        b"GET / HTTP/1.1\r\nCookie: a=b; "
        + SESSION_COOKIE.encode()
        + b"="
        + sid.encode()
        + b"\r\n\r\n"
    )
    assert not authorize(b"GET / HTTP/1.1\r\nX-Api-Key: hk_wrong\r\n\r\n")
    assert not authorize(b"GET / HTTP/1.1\r\nCookie: " + SESSION_COOKIE.encode() + b"=nope\r\n\r\n")
    assert not authorize(b"GET / HTTP/1.1\r\n\r\n")


def test_failed_api_keys_are_throttled_per_source(env: object) -> None:
    from appliance.transport.governance import FailureThrottle

    now = [0.0]
    throttle = FailureThrottle(limit=3, window=60.0, clock=lambda: now[0])
    for _ in range(3):
        assert not throttle.blocked("10.0.0.1")
        throttle.failed("10.0.0.1")
    assert throttle.blocked("10.0.0.1") and not throttle.blocked("10.0.0.2")
    now[0] = 61.0
    assert not throttle.blocked("10.0.0.1")
    # through the admin app: the 51st wrong key from one address is a 429, the right key too
    for _ in range(50):
        assert env.a("GET", "/users", key="hk_wrong").status_code == 401  # type: ignore[attr-defined]
    res = env.a("GET", "/users", key="hk_wrong")  # type: ignore[attr-defined]
    assert res.status_code == 429 and res.headers["Retry-After"] == "60"
