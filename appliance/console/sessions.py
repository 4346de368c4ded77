"""Console sessions: the in-memory table of logged-in browser sessions.

A session is created when a user logs in to the web console with an API key. The browser holds the
session id in an HttpOnly cookie and the CSRF token in a readable cookie (double-submit); the server
keeps both here, bound to the identity the API key resolved to. Sessions end on logout, after an
idle timeout, or after an absolute lifetime, whichever comes first. Nothing is persisted: a manager
restart logs every browser out, which is the safe default for an appliance.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["Session", "SessionStore", "DEFAULT_IDLE_TIMEOUT", "DEFAULT_LIFETIME", "MAX_SESSIONS"]

logger = logging.getLogger(__name__)

DEFAULT_IDLE_TIMEOUT = 30 * 60.0  # seconds without a request before a session expires
DEFAULT_LIFETIME = 8 * 3600.0  # absolute session lifetime (a working day)
MAX_SESSIONS = 1024  # oldest sessions are dropped beyond this


def _digest(token: str) -> str:
    """Key under which a session id is stored (a leaked table holds no usable cookie)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """One console session bound to an authenticated identity.

    Attributes:
        key: sha256 of the session id held in the browser cookie.
        csrf_token: the token every non-GET request must echo in the CSRF header.
        identity: the identity object the API key resolved to (manager-defined).
        role: the identity's role as a plain string (admin, analyst, plugin).
        name: a display name for the console header.
        created: creation time (clock seconds).
        last_seen: time of the last request in this session.
    """

    key: str
    csrf_token: str
    identity: Any = field(compare=False)
    role: str
    name: str
    created: float
    last_seen: float

    def to_dict(self, *, lifetime: float, idle_timeout: float) -> dict[str, Any]:
        """Public view of the session (never the session id itself)."""
        expires = min(self.created + lifetime, self.last_seen + idle_timeout)
        return {
            "name": self.name,
            "role": self.role,
            "csrf_token": self.csrf_token,
            "created": self.created,
            "expires": expires,
        }


class SessionStore:
    """Thread-safe table of console sessions with idle and absolute expiry.

    Args:
        clock: returns the current time in seconds (injected for tests).
        token: returns a fresh random URL-safe token (injected for tests).
        idle_timeout: seconds of inactivity after which a session ends.
        lifetime: absolute lifetime of a session in seconds.
        max_sessions: cap on live sessions; the least recently used are dropped first.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        token: Callable[[], str] = lambda: secrets.token_urlsafe(32),
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        lifetime: float = DEFAULT_LIFETIME,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self._clock = clock
        self._token = token
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime
        self._max = max_sessions
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def create(self, identity: Any, *, role: str, name: str) -> tuple[str, Session]:
        """Open a session for `identity`; returns the cookie value and the session."""
        now = self._clock()
        sid = self._token()
        session = Session(
            key=_digest(sid),
            csrf_token=self._token(),
            identity=identity,
            role=role,
            name=name,
            created=now,
            last_seen=now,
        )
        with self._lock:
            self._sessions[session.key] = session
            self._evict(now)
        logger.info("console session opened for %s (%s)", name, role)
        return sid, session

    def get(self, sid: str | None, *, touch: bool = True) -> Session | None:
        """The live session for cookie value `sid`, or None (unknown or expired)."""
        if not sid:
            return None
        key = _digest(sid)
        now = self._clock()
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[key]
                return None
            if touch:
                session = replace(session, last_seen=now)
                self._sessions[key] = session
            return session

    def delete(self, sid: str | None) -> bool:
        """End the session for cookie value `sid`; True if there was one."""
        if not sid:
            return False
        with self._lock:
            session = self._sessions.pop(_digest(sid), None)
        if session is not None:
            logger.info("console session closed for %s", session.name)
        return session is not None

    def delete_where(self, predicate: Callable[[Session], bool]) -> int:
        """End every session matching `predicate` (e.g. a deleted user's); returns the count."""
        with self._lock:
            doomed = [k for k, s in self._sessions.items() if predicate(s)]
            for k in doomed:
                del self._sessions[k]
        return len(doomed)

    @staticmethod
    def csrf_ok(session: Session, presented: str | None) -> bool:
        """Constant-time check of a presented CSRF token against the session's."""
        if not presented:
            return False
        return hmac.compare_digest(session.csrf_token.encode(), presented.encode())

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.last_seen > self.idle_timeout or now - session.created > self.lifetime

    def _evict(self, now: float) -> None:
        """Drop expired sessions, then the least recently used beyond the cap (lock held)."""
        for key in [k for k, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[key]
        if len(self._sessions) > self._max:
            by_age = sorted(self._sessions.values(), key=lambda s: s.last_seen)
            for s in by_age[: len(self._sessions) - self._max]:
                del self._sessions[s.key]
            logger.warning("console session cap reached; dropped the least recently used")
