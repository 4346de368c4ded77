"""Console authentication: API-key login, session cookies and CSRF checks.

`ConsoleAuth` turns an API key into a browser session (via the manager's own key check, injected as
`authenticate`) and turns a request carrying the session cookie back into that identity. It is what
the manager's authentication middleware calls when a request has no `X-Api-Key` header::

    identity = console_auth.resolve_session(req)   # None: not logged in; raises Forbidden on CSRF

Cookies (both `Secure`, `SameSite=Strict`, `Path=/`; the `__Host-` prefix stops subdomains
from setting them):

* `__Host-heron-session`: the session id, `HttpOnly`;
* `__Host-heron-csrf`: the CSRF token, readable by the console's JavaScript, which echoes it in the
  `X-CSRF-Token` header of every non-GET request (double submit). The server checks the header
  against the token it keeps for the session and against the cookie, in constant time.

Security: non-GET requests from another origin are refused even with a valid token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import falcon

from appliance.console.sessions import Session, SessionStore
from appliance.core.errors import ApplianceError, Forbidden, TooManyRequests, Unauthorized
from appliance.transport.governance import FailureThrottle, RateLimitedLog

__all__ = [
    "CONSOLE_ROLES",
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SAFE_METHODS",
    "SESSION_COOKIE",
    "ConsoleAuth",
    "name_of",
    "role_of",
]

logger = logging.getLogger(__name__)

SESSION_COOKIE = "__Host-heron-session"
CSRF_COOKIE = "__Host-heron-csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # expires= for clearing (Falcon drops max_age=0)
LOGIN_FAILURES = 20  # failed console logins per source (or user) per minute before 429
CONSOLE_ROLES = frozenset({"admin", "analyst"})  # plugin keys are for machines, not browsers


def role_of(identity: Any) -> str:
    """The identity's role as a plain lower-case string ('' when it has none)."""
    role = identity.get("role") if isinstance(identity, dict) else getattr(identity, "role", "")
    role = getattr(role, "value", role)
    return str(role or "").lower()


def name_of(identity: Any) -> str:
    """A display name for the identity (identifier, name or uuid)."""
    for attr in ("identifier", "name", "username", "uuid"):
        value = identity.get(attr) if isinstance(identity, dict) else getattr(identity, attr, None)
        if value:
            return str(value)
    return "unknown"


class ConsoleAuth:
    """Logs browsers in with an API key and resolves their session cookies.

    Args:
        authenticate: the manager's API-key check; returns an identity or None.
        sessions: the session table (a fresh one by default).
        console_roles: roles allowed to open a console session.
        secure_cookies: set `Secure` on cookies (only tests over plain HTTP turn it off).
        refresh: optional `fn(identity) -> identity | None` re-reading the user on each request,
            so that deleting a user or changing their role takes effect on open sessions.
        source_of: the client address of a request (the TLS front's peer, not loopback).

    Security: failed logins are throttled per source address (an unknown key) and per
    user (a known key whose role may not use the console): past `LOGIN_FAILURES` in a minute,
    429 + Retry-After until that minute ends; their WARNINGs are rate-limited per source / user.
    """

    def __init__(
        self,
        authenticate: Callable[[str], Any | None],
        sessions: SessionStore | None = None,
        *,
        console_roles: Iterable[str] = CONSOLE_ROLES,
        secure_cookies: bool = True,
        refresh: Callable[[Any], Any | None] | None = None,
        source_of: Callable[[falcon.Request], str] | None = None,
    ) -> None:
        self._authenticate = authenticate
        self.source_of = source_of or (lambda req: str(req.remote_addr or ""))
        self.throttle = FailureThrottle(limit=LOGIN_FAILURES, window=60.0)
        self.log = RateLimitedLog(logger)
        self._refresh = refresh
        self.sessions = sessions if sessions is not None else SessionStore()
        self.console_roles = frozenset(console_roles)
        self.secure_cookies = secure_cookies

    def _check_throttle(self, key: str, what: str) -> None:
        if self.throttle.blocked(key):
            raise TooManyRequests(
                f"too many failed console logins {what}", retry_after=int(self.throttle.window)
            )

    # --- login / logout -------------------------------------------------------------------------

    def login(self, api_key: str, source: str = "") -> tuple[str, Session]:
        """Open a session for the holder of `api_key`; returns (cookie value, session).

        Raises:
            Unauthorized: the key is empty or unknown.
            Forbidden: the key is valid but its role may not use the console.
            TooManyRequests: too many failed logins from `source`, or for this user.
        """
        self._check_throttle(f"ip:{source}", "from this address")
        if not api_key or not isinstance(api_key, str):
            raise Unauthorized("an API key is required")
        try:
            identity = self._authenticate(api_key.strip())
        except Unauthorized:  # the manager's check raises rather than returning None
            identity = None
        if identity is None:
            self.throttle.failed(f"ip:{source}")
            self.log.warning(
                f"ip:{source}", "console login refused from %s: unknown API key", source
            )
            raise Unauthorized("invalid API key")
        role, name = role_of(identity), name_of(identity)
        if role not in self.console_roles:
            self._check_throttle(f"user:{name}", "for this user")
            self.throttle.failed(f"user:{name}")
            self.log.warning(
                f"user:{name}", "console login refused for %s from %s: role %r", name, source, role
            )
            raise Forbidden(f"role {role or 'none'!r} cannot use the web console")
        return self.sessions.create(identity, role=role, name=name_of(identity))

    def logout(self, req: falcon.Request) -> bool:
        """End the request's session (CSRF-checked by the caller); True if one existed."""
        return self.sessions.delete(self._cookie(req, SESSION_COOKIE))

    def end_sessions_of(self, predicate: Callable[[Any], bool]) -> int:
        """End every session whose identity matches (after a user is deleted or re-keyed)."""
        return self.sessions.delete_where(lambda s: predicate(s.identity))

    # --- per request ----------------------------------------------------------------------------

    def session_for(self, req: falcon.Request) -> Session | None:
        """The live session named by the request's cookie, without any CSRF check."""
        return self.sessions.get(self._cookie(req, SESSION_COOKIE))

    def resolve_session(self, req: falcon.Request) -> Any | None:
        """The identity behind the request's session cookie, or None if there is none.

        For methods other than GET/HEAD/OPTIONS the CSRF header must match the session's token
        and the CSRF cookie, and the Origin (when sent) must be this host.

        Raises:
            Forbidden: a session exists but the CSRF token or Origin check failed.
        """
        session = self.session_for(req)
        if session is None:
            return None
        if req.method not in SAFE_METHODS:
            self.check_csrf(req, session)
        if self._refresh is None:
            return session.identity
        try:
            current = self._refresh(session.identity)
        except ApplianceError:  # NotFound: the user was deleted
            current = None
        if current is None or role_of(current) not in self.console_roles:
            logger.info("console session of %s ended: user deleted or role changed", session.name)
            self.sessions.delete_where(lambda s: s.key == session.key)
            return None
        return current

    def check_csrf(self, req: falcon.Request, session: Session) -> None:
        """Raise Forbidden unless the request proves it comes from the console page."""
        header = req.get_header(CSRF_HEADER)
        cookie = self._cookie(req, CSRF_COOKIE)
        if not (SessionStore.csrf_ok(session, header) and SessionStore.csrf_ok(session, cookie)):
            logger.warning("CSRF check failed for %s %s (%s)", req.method, req.path, session.name)
            raise Forbidden("missing or invalid CSRF token")
        origin = req.get_header("Origin")
        host = req.get_header("Host") or ""
        if origin and origin != "null" and urlsplit(origin).netloc != host:
            logger.warning("cross-origin %s %s from %s refused", req.method, req.path, origin)
            raise Forbidden("cross-origin request refused")

    # --- cookies --------------------------------------------------------------------------------

    def set_cookies(self, resp: falcon.Response, sid: str, session: Session) -> None:
        """Attach the session and CSRF cookies for a fresh session."""
        max_age = int(self.sessions.lifetime)
        resp.set_cookie(
            SESSION_COOKIE,
            sid,
            max_age=max_age,
            path="/",
            secure=self.secure_cookies,
            http_only=True,
            same_site="Strict",
        )
        resp.set_cookie(
            CSRF_COOKIE,
            session.csrf_token,
            max_age=max_age,
            path="/",
            secure=self.secure_cookies,
            http_only=False,
            same_site="Strict",
        )

    def clear_cookies(self, resp: falcon.Response) -> None:
        """Expire both console cookies in the browser."""
        for name, http_only in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
            resp.set_cookie(
                name,
                "",
                expires=_EPOCH,
                path="/",
                secure=self.secure_cookies,
                http_only=http_only,
                same_site="Strict",
            )

    @staticmethod
    def _cookie(req: falcon.Request, name: str) -> str | None:
        values = req.get_cookie_values(name)
        return values[0] if values else None
