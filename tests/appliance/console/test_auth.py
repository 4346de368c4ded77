"""Console login/logout, cookie flags, CSRF rejection, expiry and role enforcement, in process."""

from __future__ import annotations

from typing import Any

import falcon.testing
import pytest

from appliance.console import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE, ConsoleAuth

from .conftest import ADMIN_KEY, ANALYST_KEY, PLUGIN_KEY, Clock

Client = falcon.testing.TestClient


def login(client: Client, key: str) -> tuple[dict[str, str], str, falcon.testing.Result]:
    result = client.simulate_post("/console/api/login", json={"api_key": key})
    assert result.status_code == 200, result.text
    cookies = {name: cookie.value for name, cookie in result.cookies.items()}
    return cookies, cookies[CSRF_COOKIE], result


def test_login_sets_secure_httponly_strict_session_cookie(client: Client) -> None:
    cookies, csrf, result = login(client, ADMIN_KEY)
    session = result.cookies[SESSION_COOKIE]
    assert session.http_only and session.secure and session.same_site == "Strict"
    assert session.path == "/" and session.domain is None
    csrf_cookie = result.cookies[CSRF_COOKIE]
    assert csrf_cookie.secure and not csrf_cookie.http_only and csrf_cookie.same_site == "Strict"
    body = result.json
    assert body["message"] == "OK" and body["error"] == ""
    assert body["data"]["role"] == "admin" and body["data"]["name"] == "admin-user"
    assert body["data"]["csrf_token"] == csrf
    # the session id never appears in the body
    assert cookies[SESSION_COOKIE] not in result.text


def test_session_cookie_authenticates_reads(client: Client) -> None:
    cookies, _, _ = login(client, ANALYST_KEY)
    result = client.simulate_get("/stats", cookies=cookies)
    assert result.status_code == 200
    assert result.json["data"] == {"who": "analyst-user"}
    assert client.simulate_get("/console/api/session", cookies=cookies).json["data"]["role"] == (
        "analyst"
    )


@pytest.mark.parametrize(
    "body",
    [{"api_key": "wrong"}, {"api_key": ""}, {}, {"api_key": ADMIN_KEY + "x"}],
    ids=["wrong", "empty", "missing", "suffixed"],
)
def test_login_with_bad_key_is_refused_without_cookie(client: Client, body: dict[str, Any]) -> None:
    result = client.simulate_post("/console/api/login", json=body)
    assert result.status_code == 401
    assert result.json["message"] == "NOK"
    assert SESSION_COOKIE not in result.cookies


def test_login_requires_json(client: Client) -> None:
    result = client.simulate_post(
        "/console/api/login",
        body=f"api_key={ADMIN_KEY}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert result.status_code == 400
    assert SESSION_COOKIE not in result.cookies


def test_plugin_role_cannot_open_console_session(client: Client) -> None:
    result = client.simulate_post("/console/api/login", json={"api_key": PLUGIN_KEY})
    assert result.status_code == 403
    assert SESSION_COOKIE not in result.cookies


def test_write_without_csrf_header_is_rejected(client: Client) -> None:
    cookies, csrf, _ = login(client, ADMIN_KEY)
    assert client.simulate_post("/stats", cookies=cookies).status_code == 403
    wrong = client.simulate_post("/stats", cookies=cookies, headers={CSRF_HEADER: csrf[:-1] + "x"})
    assert wrong.status_code == 403
    ok = client.simulate_post("/stats", cookies=cookies, headers={CSRF_HEADER: csrf})
    assert ok.status_code == 200 and ok.json["data"] == "written"


def test_csrf_header_must_match_cookie_too(client: Client) -> None:
    cookies, csrf, _ = login(client, ADMIN_KEY)
    no_cookie = {SESSION_COOKIE: cookies[SESSION_COOKIE]}
    assert (
        client.simulate_post("/stats", cookies=no_cookie, headers={CSRF_HEADER: csrf}).status_code
        == 403
    )


def test_csrf_token_of_another_session_is_rejected(client: Client) -> None:
    cookies_a, _, _ = login(client, ADMIN_KEY)
    _, csrf_b, _ = login(client, ADMIN_KEY)
    result = client.simulate_post(
        "/stats", cookies={**cookies_a, CSRF_COOKIE: csrf_b}, headers={CSRF_HEADER: csrf_b}
    )
    assert result.status_code == 403


def test_cross_origin_write_is_rejected_even_with_token(client: Client) -> None:
    cookies, csrf, _ = login(client, ADMIN_KEY)
    result = client.simulate_post(
        "/stats",
        cookies=cookies,
        headers={CSRF_HEADER: csrf, "Origin": "https://evil.example", "Host": "heron.local"},
    )
    assert result.status_code == 403
    same = client.simulate_post(
        "/stats",
        cookies=cookies,
        headers={CSRF_HEADER: csrf, "Origin": "https://heron.local", "Host": "heron.local"},
    )
    assert same.status_code == 200


def test_analyst_session_cannot_write(client: Client) -> None:
    cookies, csrf, _ = login(client, ANALYST_KEY)
    result = client.simulate_post("/stats", cookies=cookies, headers={CSRF_HEADER: csrf})
    assert result.status_code == 403
    assert result.json["error"] == "role not allowed"


def test_logout_ends_session_and_expires_cookies(client: Client) -> None:
    cookies, csrf, _ = login(client, ADMIN_KEY)
    refused = client.simulate_post("/console/api/logout", cookies=cookies)
    assert refused.status_code == 403  # logout is CSRF-protected too
    result = client.simulate_post(
        "/console/api/logout", cookies=cookies, headers={CSRF_HEADER: csrf}
    )
    assert result.status_code == 200
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        cleared = result.cookies[name]
        assert cleared.value == "" and cleared.secure and cleared.path == "/"
        assert cleared.expires is not None and cleared.expires.year == 1970
    assert client.simulate_get("/stats", cookies=cookies).status_code == 401
    assert client.simulate_get("/console/api/session", cookies=cookies).json["data"] is None


def test_unknown_session_cookie_is_not_authenticated(client: Client) -> None:
    assert client.simulate_get("/stats", cookies={SESSION_COOKIE: "forged"}).status_code == 401
    assert client.simulate_get("/stats").status_code == 401


def test_session_expires_when_idle_and_after_lifetime(
    client: Client, console_auth: ConsoleAuth, clock: Clock
) -> None:
    cookies, _, _ = login(client, ADMIN_KEY)
    clock.now += console_auth.sessions.idle_timeout - 1
    assert client.simulate_get("/stats", cookies=cookies).status_code == 200
    clock.now += console_auth.sessions.idle_timeout + 1
    assert client.simulate_get("/stats", cookies=cookies).status_code == 401

    cookies, _, _ = login(client, ADMIN_KEY)
    for _ in range(int(console_auth.sessions.lifetime // console_auth.sessions.idle_timeout) + 1):
        clock.now += console_auth.sessions.idle_timeout - 1
        client.simulate_get("/stats", cookies=cookies)
    assert client.simulate_get("/stats", cookies=cookies).status_code == 401


def test_each_login_gets_a_fresh_session(client: Client) -> None:
    first, _, _ = login(client, ADMIN_KEY)
    second, _, _ = login(client, ADMIN_KEY)
    assert first[SESSION_COOKIE] != second[SESSION_COOKIE]
    assert first[CSRF_COOKIE] != second[CSRF_COOKIE]


def test_end_sessions_of_a_deleted_user(client: Client, console_auth: ConsoleAuth) -> None:
    cookies, _, _ = login(client, ANALYST_KEY)
    admin, _, _ = login(client, ADMIN_KEY)
    assert console_auth.end_sessions_of(lambda ident: ident.identifier == "analyst-user") == 1
    assert client.simulate_get("/stats", cookies=cookies).status_code == 401
    assert client.simulate_get("/stats", cookies=admin).status_code == 200


def test_session_table_stores_no_usable_cookie(client: Client, console_auth: ConsoleAuth) -> None:
    cookies, _, _ = login(client, ADMIN_KEY)
    stored = console_auth.sessions._sessions
    assert cookies[SESSION_COOKIE] not in stored


def test_refresh_ends_sessions_of_deleted_or_demoted_users(clock: Clock) -> None:
    from appliance.console import SessionStore, add_console_routes
    from appliance.core.errors import ApplianceError, NotFound

    from .conftest import AuthMiddleware, FakeUser, Stats, _render, authenticate

    current: dict[str, FakeUser] = {}

    def refresh(ident: FakeUser) -> FakeUser:
        if ident.identifier not in current:
            raise NotFound("no such user")
        return current[ident.identifier]

    auth = ConsoleAuth(authenticate, SessionStore(clock=clock), refresh=refresh)
    app = falcon.App(middleware=[AuthMiddleware(auth)])
    app.add_error_handler(ApplianceError, _render)
    app.add_route("/stats", Stats())
    add_console_routes(app, auth)
    client = falcon.testing.TestClient(app)
    current["analyst-user"] = FakeUser("analyst-user", "analyst")
    current["admin-user"] = FakeUser("admin-user", "admin")
    analyst, _, _ = login(client, ANALYST_KEY)
    admin, _, _ = login(client, ADMIN_KEY)
    assert client.simulate_get("/stats", cookies=analyst).status_code == 200
    del current["analyst-user"]
    assert client.simulate_get("/stats", cookies=analyst).status_code == 401
    current["admin-user"] = FakeUser("admin-user", "plugin")  # demoted to a machine role
    assert client.simulate_get("/stats", cookies=admin).status_code == 401
    assert len(auth.sessions) == 0


def test_authenticate_that_raises_unauthorized_is_a_failed_login(clock: Clock) -> None:
    from appliance.console import SessionStore
    from appliance.core.errors import Unauthorized

    def strict(key: str) -> object:
        raise Unauthorized("unknown key")

    auth = ConsoleAuth(strict, SessionStore(clock=clock))
    with pytest.raises(Unauthorized, match="invalid API key"):
        auth.login("whatever")
