"""Failed console logins are throttled per source address and per user, with rate-limited
WARNINGs; failed TLS handshakes on a real front log at most one WARNING per source per 10 s."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest

from appliance.api.app import Api, create_app
from appliance.console import console_for
from appliance.console.auth import LOGIN_FAILURES
from appliance.runtime.context import AppContext, build_context
from appliance.security.pki import Pki
from appliance.store import Role, Store
from tests.appliance.console.harness import start_manager
from tests.support.memory_store import MemoryEventStore

LOGIN = "/console/api/login"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[AppContext, falcon.testing.TestClient, dict[str, str]]]:
    pki = Pki.create(tmp_path / "pki", server_names=["127.0.0.1"])
    ctx = build_context(
        data_dir=tmp_path, store=Store(":memory:"), pki=pki, events=MemoryEventStore()
    )
    ctx.extensions.add(console_for(ctx))
    keys = {
        n: ctx.identity.add_user(n, r)[1] for n, r in (("bob", Role.ANALYST), ("feed", Role.PLUGIN))
    }
    yield ctx, falcon.testing.TestClient(create_app(ctx, Api.ADMIN)), keys
    ctx.close()


def _login(client: falcon.testing.TestClient, key: str, ip: str) -> falcon.testing.Result:
    return client.simulate_post(LOGIN, json={"api_key": key}, remote_addr=ip)


def test_failed_logins_are_throttled_per_source(
    app: tuple[AppContext, falcon.testing.TestClient, dict[str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, client, keys = app
    with caplog.at_level(logging.WARNING):
        for _ in range(LOGIN_FAILURES):
            assert _login(client, "hek_wrong", "10.0.0.9").status_code == 401
        refused = _login(client, keys["bob"], "10.0.0.9")  # even a good key, from there
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
    assert "too many failed console logins from this address" in refused.json["error"]
    assert _login(client, keys["bob"], "10.0.0.10").status_code == 200  # another address
    lines = [r.getMessage() for r in caplog.records if "console login refused" in r.getMessage()]
    assert lines == ["console login refused from 10.0.0.9: unknown API key"]  # rate-limited


def test_refused_role_is_throttled_per_user(
    app: tuple[AppContext, falcon.testing.TestClient, dict[str, str]],
) -> None:
    _, client, keys = app
    for i in range(LOGIN_FAILURES):  # a plugin key (no console) from many addresses
        assert _login(client, keys["feed"], f"10.1.0.{i}").status_code == 403
    refused = _login(client, keys["feed"], "10.2.0.1")
    assert refused.status_code == 429 and "for this user" in refused.json["error"]
    assert _login(client, keys["bob"], "10.2.0.1").status_code == 200  # other users unaffected


def test_failed_tls_handshakes_log_rate_limited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager = start_manager(tmp_path)
    try:
        port = int(manager.admin_url.rsplit(":", 1)[1])
        started = time.monotonic()
        with caplog.at_level(logging.WARNING):
            for _ in range(30):  # plain-text garbage instead of a ClientHello
                with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    s.settimeout(30)
                    while s.recv(4096):
                        pass
            elapsed = time.monotonic() - started
            failed = [
                r for r in caplog.records if "handshake with 127.0.0.1 failed" in r.getMessage()
            ]
        assert 1 <= len(failed) <= 1 + int(elapsed // 10)
    finally:
        manager.close()
