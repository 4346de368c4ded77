"""The console on the real admin app (create_app, AdminAuth, real resources), in process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from appliance.api.app import Api, create_app
from appliance.console import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE, console_for
from appliance.runtime.context import AppContext, build_context
from appliance.security.pki import Pki
from appliance.store import Role, Store
from tests.support.memory_store import MemoryEventStore


@dataclass
class Admin:
    ctx: AppContext
    client: falcon.testing.TestClient
    keys: dict[str, str]

    def login(self, who: str) -> tuple[dict[str, str], dict[str, str]]:
        """Log `who` in; returns (cookies, CSRF header) for later requests."""
        result = self.client.simulate_post("/console/api/login", json={"api_key": self.keys[who]})
        assert result.status_code == 200, result.text
        cookies = {name: c.value for name, c in result.cookies.items()}
        return cookies, {CSRF_HEADER: cookies[CSRF_COOKIE]}


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[Admin]:
    pki = Pki.create(tmp_path / "pki", server_names=["127.0.0.1"])
    ctx = build_context(
        data_dir=tmp_path, store=Store(":memory:"), pki=pki, events=MemoryEventStore()
    )
    ctx.extensions.add(console_for(ctx))
    keys = {}
    for name, role in (("alice", Role.ADMIN), ("bob", Role.ANALYST), ("feed", Role.PLUGIN)):
        keys[name] = ctx.identity.add_user(name, role)[1]
    yield Admin(ctx, falcon.testing.TestClient(create_app(ctx, Api.ADMIN)), keys)
    ctx.close()


def test_console_is_mounted_and_documented(admin: Admin) -> None:
    page = admin.client.simulate_get("/console/")
    assert page.status_code == 200 and "Content-Security-Policy" in page.headers
    doc = admin.client.simulate_get("/openapi.json", headers={"X-Api-Key": admin.keys["alice"]})
    paths = doc.json["paths"]
    assert {
        "/console/api/login",
        "/console/api/logout",
        "/console/api/session",
        "/console/api/overview",
    } <= set(paths)
    assert "requestBody" in paths["/console/api/login"]["post"]


def test_session_reads_and_csrf_protected_writes_on_real_routes(admin: Admin) -> None:
    cookies, csrf = admin.login("alice")
    assert admin.client.simulate_get("/endpoints", cookies=cookies).json["message"] == "OK"
    ioc = [
        {
            "type": "sha256",
            "value": "a" * 64,
            "source": "console-test",
            "uuid": "6f1c1b53-1f1e-4f8f-9d55-1f0a4a0f0b11",
        }
    ]
    refused = admin.client.simulate_post("/iocs", cookies=cookies, json=ioc)
    assert refused.status_code == 403 and refused.json["message"] == "NOK"
    assert admin.ctx.store.iocs.count() == 0
    ok = admin.client.simulate_post("/iocs", cookies=cookies, headers=csrf, json=ioc)
    assert ok.status_code == 200, ok.text
    assert admin.ctx.store.iocs.count() == 1
    gone = admin.client.simulate_delete(
        "/iocs", cookies=cookies, headers=csrf, params={"uuid": ioc[0]["uuid"]}
    )
    assert gone.status_code == 200 and admin.ctx.store.iocs.count() == 0


def test_analyst_session_gets_the_analyst_role(admin: Admin) -> None:
    cookies, csrf = admin.login("bob")
    assert admin.client.simulate_get("/rules", cookies=cookies).status_code == 200
    assert admin.client.simulate_get("/users", cookies=cookies).status_code == 403
    write = admin.client.simulate_post("/rules", cookies=cookies, headers=csrf, json=[{}])
    assert write.status_code == 403


def test_plugin_keys_cannot_log_in_but_still_use_the_api(admin: Admin) -> None:
    result = admin.client.simulate_post("/console/api/login", json={"api_key": admin.keys["feed"]})
    assert result.status_code == 403 and SESSION_COOKIE not in result.cookies
    api = admin.client.simulate_get("/iocs", headers={"X-Api-Key": admin.keys["feed"]})
    assert api.status_code == 200


def test_deleting_a_user_ends_their_session(admin: Admin) -> None:
    bob, _ = admin.login("bob")
    alice, csrf = admin.login("alice")
    assert admin.client.simulate_get("/endpoints", cookies=bob).status_code == 200
    users = admin.client.simulate_get("/users", cookies=alice).json["data"]
    bob_uuid = next(u["uuid"] for u in users if u["identifier"] == "bob")
    deleted = admin.client.simulate_delete(f"/users/{bob_uuid}", cookies=alice, headers=csrf)
    assert deleted.status_code == 200
    assert admin.client.simulate_get("/endpoints", cookies=bob).status_code == 401


def test_role_change_applies_to_open_sessions(admin: Admin) -> None:
    bob, bob_csrf = admin.login("bob")
    alice, csrf = admin.login("alice")
    users = admin.client.simulate_get("/users", cookies=alice).json["data"]
    bob_uuid = next(u["uuid"] for u in users if u["identifier"] == "bob")
    promoted = admin.client.simulate_post(
        f"/users/{bob_uuid}", cookies=alice, headers=csrf, json={"role": "admin"}
    )
    assert promoted.status_code == 200
    assert admin.client.simulate_get("/users", cookies=bob).status_code == 200


def test_overview_on_the_real_store(admin: Admin) -> None:
    now = admin.ctx.clock()
    admin.ctx.store.detections.add_many([("ep-1", now - 30, now - 29, "h", ["RuleA"], 8, None)])
    admin.ctx.store.db.write(lambda cur: None)
    assert admin.client.simulate_get("/console/api/overview").status_code == 401
    cookies, _ = admin.login("bob")
    data = admin.client.simulate_get("/console/api/overview", cookies=cookies).json["data"]
    assert data["total"] == 1 and data["rules"] == [{"name": "RuleA", "hits": 1}]


@pytest.mark.parametrize("path", ["/console/api/login", "/console/api/logout"])
def test_console_errors_use_the_envelope(admin: Admin, path: str) -> None:
    cookies, _ = admin.login("alice")
    result = admin.client.simulate_post(
        path, cookies=cookies, body="not json", headers={"Content-Type": "application/json"}
    )
    body: Any = result.json
    assert result.status_code in (400, 403) and set(body) == {"data", "message", "error"}
    assert body["message"] == "NOK"
