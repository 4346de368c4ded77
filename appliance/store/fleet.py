"""Fleet tables: admin users, endpoints, enrollment tokens and certificates (the command queue
is in commands.py)."""

from __future__ import annotations

import builtins
import json
import threading
from collections.abc import Callable
from typing import Any

from ..core.errors import Conflict, NotFound
from .database import Conn, Database
from .keyset import decode_cursor, encode_cursor
from .models import (
    CertRecord,
    Endpoint,
    EndpointStatus,
    Role,
    Token,
    User,
)

__all__ = ["Certs", "Endpoints", "Tokens", "Users"]

_USER_COLS = "uuid, identifier, role, grp, description, created"
_EP_COLS = (
    "uuid, hostname, ip, grp, criticality, status, last_event, last_detection, last_connection, "
    "created, system_info, config"
)


def _user(row: tuple[Any, ...]) -> User:
    return User(row[0], row[1], Role(row[2]), row[3] or "", row[4] or "", row[5] or 0.0)


def _endpoint(row: tuple[Any, ...]) -> Endpoint:
    return Endpoint(
        uuid=row[0],
        hostname=row[1] or "",
        ip=row[2] or "",
        group=row[3] or "",
        criticality=row[4] or 0,
        status=EndpointStatus(row[5]),
        last_event=row[6],
        last_detection=row[7],
        last_connection=row[8],
        created=row[9] or 0.0,
        system_info=json.loads(row[10]) if row[10] else None,
        config=json.loads(row[11]) if row[11] else None,
    )


class Users:
    """Admin API users; only the sha256 of each key is stored."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, user: User, key_hash: str) -> User:
        def fn(cur: Conn) -> None:
            if cur.execute(
                "SELECT 1 FROM users WHERE identifier = ?", [user.identifier]
            ).fetchone():
                raise Conflict(f"user {user.identifier!r} already exists")
            cur.execute(
                "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    user.uuid,
                    user.identifier,
                    key_hash,
                    user.role.value,
                    user.group,
                    user.description,
                    user.created,
                ],
            )

        self.db.write(fn)
        return user

    def by_key_hash(self, key_hash: str) -> User | None:
        rows = self.db.query(f"SELECT {_USER_COLS} FROM users WHERE key_hash = ?", [key_hash])
        return _user(rows[0]) if rows else None

    def get(self, ref: str) -> User:
        """A user by uuid or identifier."""
        rows = self.db.query(
            f"SELECT {_USER_COLS} FROM users WHERE uuid = ? OR identifier = ?", [ref, ref]
        )
        if not rows:
            raise NotFound(f"no user {ref!r}")
        return _user(rows[0])

    def list(self) -> list[User]:
        return [_user(r) for r in self.db.query(f"SELECT {_USER_COLS} FROM users ORDER BY created")]

    def page(self, *, limit: int, cursor: str | None) -> tuple[builtins.list[User], str | None]:
        """Users oldest first, and the next page's cursor (None: no more)."""
        where, params = "", list[Any]()
        if cursor:
            created, uuid = decode_cursor(cursor, ((int, float), str))
            where, params = "WHERE (created, uuid) > (?, ?)", [created, uuid]
        rows = self.db.query(
            f"SELECT {_USER_COLS} FROM users {where} ORDER BY created, uuid LIMIT ?",
            [*params, limit + 1],
        )
        users = [_user(r) for r in rows[:limit]]
        nxt = encode_cursor([users[-1].created, users[-1].uuid]) if len(rows) > limit else None
        return users, nxt

    def update(self, uuid: str, **changes: Any) -> User:
        """Change `role`, `group`, `description` or `key_hash` of a user."""
        cols = {
            "role": "role",
            "group": "grp",
            "description": "description",
            "key_hash": "key_hash",
        }
        sets = [(cols[k], v.value if isinstance(v, Role) else v) for k, v in changes.items()]
        if sets:
            sql = "UPDATE users SET " + ", ".join(f"{c} = ?" for c, _ in sets) + " WHERE uuid = ?"
            self.db.write(lambda cur: cur.execute(sql, [v for _, v in sets] + [uuid]))
        return self.get(uuid)

    def delete(self, uuid: str) -> None:
        self.get(uuid)
        self.db.write(lambda cur: cur.execute("DELETE FROM users WHERE uuid = ?", [uuid]))

    def count(self) -> int:
        return int(self.db.query("SELECT count(*) FROM users")[0][0])


TOUCH_CHUNK = 500  # endpoints per presence UPDATE statement


class Endpoints:
    """Enrolled (and pre-created) endpoints."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.config_version = 0  # bumped after a config changes (cache key of its hash)
        self._version_lock = threading.Lock()

    def _bump_config(self) -> None:
        with self._version_lock:
            self.config_version += 1

    def changed_elsewhere(self) -> None:
        """Another front-end changed an endpoint's config (cluster mode)."""
        Endpoints._bump_config(self)

    def create(self, ep: Endpoint) -> Endpoint:
        self.db.write(
            lambda cur: cur.execute(
                "INSERT INTO endpoints VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?)",
                [
                    ep.uuid,
                    ep.hostname,
                    ep.ip,
                    ep.group,
                    ep.criticality,
                    ep.status.value,
                    ep.last_event,
                    ep.last_detection,
                    ep.last_connection,
                    ep.created,
                    ep.status is EndpointStatus.ACTIVE,
                ],
            )
        )
        return ep

    def get(self, uuid: str) -> Endpoint:
        rows = self.db.query(f"SELECT {_EP_COLS} FROM endpoints WHERE uuid = ?", [uuid])
        if not rows:
            raise NotFound(f"no endpoint {uuid}")
        return _endpoint(rows[0])

    def find(self, uuid: str) -> Endpoint | None:
        rows = self.db.query(f"SELECT {_EP_COLS} FROM endpoints WHERE uuid = ?", [uuid])
        return _endpoint(rows[0]) if rows else None

    def list(
        self, *, group: str | None = None, status: str | None = None, criticality: int = 0
    ) -> list[Endpoint]:
        where: list[str] = ["criticality >= ?"]
        params: list[Any] = [criticality]
        if group:
            where.append("grp = ?")
            params.append(group)
        if status:
            where.append("status = ?")
            params.append(status)
        sql = f"SELECT {_EP_COLS} FROM endpoints WHERE {' AND '.join(where)} ORDER BY created"
        return [_endpoint(r) for r in self.db.query(sql, params)]

    def update(self, uuid: str, **changes: Any) -> Endpoint:
        cols = {
            "hostname": "hostname",
            "ip": "ip",
            "group": "grp",
            "criticality": "criticality",
            "status": "status",
            "config": "config",
            "system_info": "system_info",
            "last_connection": "last_connection",
        }
        sets: list[tuple[str, Any]] = []
        for key, value in changes.items():
            if isinstance(value, EndpointStatus):
                value = value.value
            elif key in ("config", "system_info") and value is not None:
                value = json.dumps(value)
            sets.append((cols[key], value))
        if sets:
            sql = (
                "UPDATE endpoints SET " + ", ".join(f"{c} = ?" for c, _ in sets) + " WHERE uuid = ?"
            )
            self.db.write(lambda cur: cur.execute(sql, [v for _, v in sets] + [uuid]))
            if "config" in changes:
                self._bump_config()
        return self.get(uuid)

    def touch(self, seen: dict[str, tuple[float, float | None, float | None, str]]) -> None:
        """Batch update of `(last_connection, last_event, last_detection, ip)` per uuid.

        one UPDATE … FROM (VALUES …) per TOUCH_CHUNK endpoints, not one per
        endpoint: a 10,000-endpoint fleet touches a few hundred rows per flush.
        """
        rows = [(u, c, e, d, ip) for u, (c, e, d, ip) in seen.items()]

        def fn(cur: Conn) -> None:
            for start in range(0, len(rows), TOUCH_CHUNK):
                chunk = rows[start : start + TOUCH_CHUNK]
                values = ", ".join(
                    "(?, CAST(? AS DOUBLE), CAST(? AS DOUBLE), CAST(? AS DOUBLE), ?)" for _ in chunk
                )
                cur.execute(
                    "UPDATE endpoints SET last_connection = v.c, "
                    "last_event = coalesce(v.e, endpoints.last_event), "
                    "last_detection = coalesce(v.d, endpoints.last_detection), "
                    "ip = CASE WHEN v.ip = '' THEN endpoints.ip ELSE v.ip END "
                    f"FROM (VALUES {values}) AS v(uuid, c, e, d, ip) "
                    "WHERE endpoints.uuid = v.uuid",
                    [x for row in chunk for x in row],
                )

        if rows:
            self.db.submit(fn)

    def delete(self, uuid: str) -> None:
        self.get(uuid)
        self.db.write(lambda cur: cur.execute("DELETE FROM endpoints WHERE uuid = ?", [uuid]))
        self._bump_config()

    def count_online(self, since: float) -> int:
        return int(
            self.db.query("SELECT count(*) FROM endpoints WHERE last_connection >= ?", [since])[0][
                0
            ]
        )


class Tokens:
    """One-time enrollment tokens (sha256 stored; the token itself is shown once)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, token: Token) -> None:
        self.db.write(
            lambda cur: cur.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?, NULL, ?)",
                [token.token_hash, token.uuid, token.group, token.expires, token.created],
            )
        )

    def consume(self, token_hash: str, now: float) -> Token | None:
        """Mark an unused, unexpired token used and return it (atomically), else None."""

        def fn(cur: Conn) -> Token | None:
            row = cur.execute(
                "SELECT token_hash, uuid, grp, expires, used, created FROM tokens "
                "WHERE token_hash = ?",
                [token_hash],
            ).fetchone()
            if row is None or row[4] is not None or row[3] < now:
                return None
            cur.execute("UPDATE tokens SET used = ? WHERE token_hash = ?", [now, token_hash])
            return Token(row[0], row[1], row[2] or "", row[3], now, row[5])

        return self.db.write(fn)


class Certs:
    """Issued endpoint certificates; revocation is a timestamp on the serial."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._revoked: set[str] | None = None
        self._generation = 0  # bumped by revoke(): a cache built before it is discarded
        self.on_change: list[Callable[[], None]] = []  # after each invalidate() (any thread)

    def add(self, rec: CertRecord) -> None:
        self.db.write(
            lambda cur: cur.execute(
                "INSERT INTO certs VALUES (?, ?, ?, ?, ?, NULL)",
                [rec.serial, rec.uuid, rec.sha256, rec.not_before, rec.not_after],
            )
        )

    def issued(self, limit: int) -> list[tuple[str, tuple[str, str]]]:
        """Up to `limit` unrevoked certificates: (serial, (uuid, sha256)), in one query."""
        rows = self.db.query(
            "SELECT serial, uuid, sha256 FROM certs WHERE revoked IS NULL LIMIT ?", [limit]
        )
        return [(r[0], (r[1], r[2])) for r in rows]

    def get(self, serial: str) -> CertRecord | None:
        rows = self.db.query(
            "SELECT serial, uuid, sha256, not_before, not_after, revoked FROM certs "
            "WHERE serial = ?",
            [serial],
        )
        return CertRecord(*rows[0]) if rows else None

    def revoke(self, *, uuid: str | None = None, serial: str | None = None, now: float) -> int:
        """Revoke one serial or every certificate of an endpoint; returns how many."""
        col, value = ("uuid", uuid) if uuid else ("serial", serial)

        def fn(cur: Conn) -> int:
            rows = cur.execute(
                f"SELECT serial FROM certs WHERE {col} = ? AND revoked IS NULL", [value]
            ).fetchall()
            cur.execute(
                f"UPDATE certs SET revoked = ? WHERE {col} = ? AND revoked IS NULL", [now, value]
            )
            return len(rows)

        count = self.db.write(fn)
        self.invalidate()
        return count

    def invalidate(self) -> None:
        """Drop the cached revoked set (a revoke here, or one another front-end announced)."""
        self._generation += 1
        self._revoked = None
        for hook in self.on_change:
            hook()

    def is_revoked(self, serial: str) -> bool:
        """Per-connection (and per-request) revocation check: the cached set, see `revoked`."""
        return serial in self.revoked()

    def revoked(self) -> set[str]:
        """The revoked serials (cached; read again from the store after each invalidate())."""
        revoked = self._revoked
        if revoked is None:
            generation = self._generation
            rows = self.db.query("SELECT serial FROM certs WHERE revoked IS NOT NULL")
            revoked = {r[0] for r in rows}
            if generation == self._generation:
                self._revoked = revoked
        return revoked
