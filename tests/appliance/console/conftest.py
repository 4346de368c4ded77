"""Fixtures for the console tests: an in-process app with the console mounted, and its users."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import falcon
import falcon.testing
import pytest

from appliance.console import ConsoleAuth, SessionStore, add_console_routes
from appliance.core.errors import ApplianceError, Forbidden, Unauthorized

KEYS = {
    "admin-key-" + "a" * 54: "admin",
    "analyst-key-" + "b" * 52: "analyst",
    "plugin-key-" + "c" * 53: "plugin",
}
ADMIN_KEY, ANALYST_KEY, PLUGIN_KEY = KEYS


@dataclass(frozen=True)
class FakeUser:
    """Stands in for the manager's user record: an identifier and a role."""

    identifier: str
    role: str


class Clock:
    """A settable clock for session expiry tests."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def authenticate(key: str) -> FakeUser | None:
    role = KEYS.get(key)
    return FakeUser(identifier=f"{role}-user", role=role) if role else None


class AuthMiddleware:
    """The shape the manager's middleware takes: API key first, then the console session."""

    def __init__(self, auth: ConsoleAuth) -> None:
        self._auth = auth

    def process_resource(self, req: falcon.Request, resp: Any, resource: Any, params: Any) -> None:
        if resource is None or getattr(resource, "auth_exempt", False):
            return
        key = req.get_header("X-Api-Key")
        identity = authenticate(key) if key else self._auth.resolve_session(req)
        if identity is None:
            raise Unauthorized("authentication required")
        req.context.identity = identity


def require_role(*roles: str) -> Callable[..., None]:
    def hook(req: falcon.Request, resp: Any, resource: Any, params: Any) -> None:
        if req.context.identity.role not in roles:
            raise Forbidden("role not allowed")

    return hook


class Stats:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        who = req.context.identity.identifier
        resp.media = {"data": {"who": who}, "message": "OK", "error": ""}

    @falcon.before(require_role("admin"))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"data": "written", "message": "OK", "error": ""}


def _render(req: falcon.Request, resp: falcon.Response, ex: ApplianceError, params: Any) -> None:
    resp.status = ex.status
    resp.media = {"data": None, "message": "NOK", "error": ex.message}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def console_auth(clock: Clock) -> ConsoleAuth:
    return ConsoleAuth(authenticate, SessionStore(clock=clock))


@pytest.fixture
def client(console_auth: ConsoleAuth) -> falcon.testing.TestClient:
    app = falcon.App(middleware=[AuthMiddleware(console_auth)])
    app.add_error_handler(ApplianceError, _render)
    app.add_route("/stats", Stats())
    add_console_routes(app, console_auth)
    return falcon.testing.TestClient(app)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item (browser tests screenshot failures)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
