"""Distributed content and bookkeeping: IoCs, rules, documents, tools, settings, audit log."""

from __future__ import annotations

import builtins
import hashlib
import json
import threading
from collections.abc import Iterable
from typing import Any

from rules import wire

from ..core.errors import NotFound
from .database import Conn, Database
from .keyset import decode_cursor, encode_cursor

__all__ = ["Audit", "Documents", "Iocs", "RulesTable", "Settings", "Tools"]


class Iocs:
    """Indicators distributed to agents (upserted by uuid)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.version = 0  # bumped after every change (cache key for /iocs and /iocs/sha256)
        self._version_lock = threading.Lock()

    def _bump(self) -> None:
        with self._version_lock:  # MISP sync and admin requests write from different threads
            self.version += 1

    def upsert(self, iocs: Iterable[wire.Ioc], now: float) -> int:
        rows = [[i.uuid, i.guuid, i.source, i.value, i.type, now] for i in iocs]
        if not rows:
            return 0

        def fn(cur: Conn) -> None:
            values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(rows))
            cur.execute(
                f"INSERT OR REPLACE INTO iocs VALUES {values}", [v for r in rows for v in r]
            )

        self.db.write(fn)
        self._bump()
        return len(rows)

    def list(self, filters: dict[str, str] | None = None, *, any_of: bool = True) -> list[wire.Ioc]:
        """IoCs matching `filters` (OR'ed when `any_of`, as WHIDS GET; else AND'ed)."""
        where, params = _where(filters or {}, any_of)
        rows = self.db.query(
            f"SELECT value, type, uuid, guuid, source FROM iocs {where} ORDER BY created, uuid",
            params,
        )
        return [wire.Ioc(*r) for r in rows]

    def page(
        self, filters: dict[str, str], *, limit: int, cursor: str | None
    ) -> tuple[builtins.list[wire.Ioc], str | None]:
        """One page of `list(filters)` in the same order, and the next page's cursor."""
        where, params = _where(filters, True)
        clauses = [f"({where[len('WHERE ') :]})"] if where else []
        if cursor:
            created, uuid = decode_cursor(cursor, ((int, float), str))
            clauses.append("(created, uuid) > (?, ?)")
            params = [*params, created, uuid]
        sql = "SELECT value, type, uuid, guuid, source, created FROM iocs"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        rows = self.db.query(sql + " ORDER BY created, uuid LIMIT ?", [*params, limit + 1])
        nxt = encode_cursor([rows[limit - 1][5], rows[limit - 1][2]]) if len(rows) > limit else None
        return [wire.Ioc(*r[:5]) for r in rows[:limit]], nxt

    def delete(self, filters: dict[str, str]) -> int:
        """Delete IoCs matching every filter (AND); no filter deletes nothing."""
        if not filters:
            return 0
        where, params = _where(filters, False)

        def fn(cur: Conn) -> int:
            count = cur.execute(f"SELECT count(*) FROM iocs {where}", params).fetchone()
            cur.execute(f"DELETE FROM iocs {where}", params)
            return int(count[0]) if count else 0

        deleted = self.db.write(fn)
        if deleted:
            self._bump()
        return deleted

    def count(self) -> int:
        return int(self.db.query("SELECT count(*) FROM iocs")[0][0])


def _where(filters: dict[str, str], any_of: bool) -> tuple[str, list[Any]]:
    cols = [k for k in ("uuid", "guuid", "source", "value", "type") if filters.get(k)]
    if not cols:
        return "", []
    joiner = " OR " if any_of else " AND "
    return "WHERE " + joiner.join(f"{c} = ?" for c in cols), [filters[c] for c in cols]


class RulesTable:
    """Gene rules by name (raw JSON text as uploaded)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def upsert(self, rules: dict[str, str], now: float) -> None:
        if not rules:
            return
        items = list(rules.items())

        def fn(cur: Conn) -> None:
            values = ", ".join(["(?, ?, ?)"] * len(items))
            cur.execute(
                f"INSERT OR REPLACE INTO rules VALUES {values}",
                [v for name, text in items for v in (name, text, now)],
            )

        self.db.write(fn)

    def all(self) -> dict[str, str]:
        return dict(self.db.query("SELECT name, text FROM rules ORDER BY name"))

    def delete(self, name: str) -> None:
        if not self.db.query("SELECT 1 FROM rules WHERE name = ?", [name]):
            raise NotFound(f"no rule {name!r}")
        self.db.write(lambda cur: cur.execute("DELETE FROM rules WHERE name = ?", [name]))


class Documents:
    """Small versioned documents: agent configs, Sysmon configs (kind, key) → body + sha256."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # bumped after every change, per kind family (the text before ":"): cache keys
        self._versions: dict[str, int] = {}
        self._version_lock = threading.Lock()

    def version(self, family: str) -> int:
        """Change counter of the kinds ``family`` or ``family:*`` (e.g. ``sysmon``)."""
        return self._versions.get(family, 0)

    def _bump(self, kind: str) -> None:
        family = kind.split(":", 1)[0]
        with self._version_lock:
            self._versions[family] = self._versions.get(family, 0) + 1

    def changed_elsewhere(self, family: str) -> None:
        """Another front-end changed documents of ``family`` (cluster mode)."""
        Documents._bump(self, family)

    def put(self, kind: str, key: str, body: str, sha256: str, now: float) -> None:
        self.db.write(
            lambda cur: cur.execute(
                "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?)",
                [kind, key, body, sha256, now],
            )
        )
        self._bump(kind)

    def get(self, kind: str, key: str) -> tuple[str, str] | None:
        rows = self.db.query(
            "SELECT body, sha256 FROM documents WHERE kind = ? AND key = ?", [kind, key]
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def bodies(self, kind: str) -> dict[str, str]:
        """key → body of every document of `kind` (one query)."""
        rows = self.db.query("SELECT key, body FROM documents WHERE kind = ?", [kind])
        return {str(k): str(b) for k, b in rows}

    def keys(self, kind: str) -> list[str]:
        return [r[0] for r in self.db.query("SELECT key FROM documents WHERE kind = ?", [kind])]

    def delete(self, kind: str, key: str) -> bool:
        def fn(cur: Conn) -> bool:
            found = cur.execute(
                "SELECT 1 FROM documents WHERE kind = ? AND key = ?", [kind, key]
            ).fetchone()
            cur.execute("DELETE FROM documents WHERE kind = ? AND key = ?", [kind, key])
            return found is not None

        found: bool = self.db.write(fn)
        self._bump(kind)
        return found


class Tools:
    """Binaries distributed to endpoints (Sysmon, osqueryi, others) with four hashes."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.version = 0  # bumped after every change (cache key of the /updates tools hash)
        self._version_lock = threading.Lock()

    def _bump(self) -> None:
        with self._version_lock:
            self.version += 1

    def changed_elsewhere(self) -> None:
        """Another front-end changed the tools (cluster mode)."""
        Tools._bump(self)

    def put(
        self, name: str, os_name: str, data: bytes, now: float, alias: str = ""
    ) -> dict[str, Any]:
        hashes = {h: hashlib.new(h, data).hexdigest() for h in ("md5", "sha1", "sha256", "sha512")}
        self.db.write(
            lambda cur: cur.execute(
                "INSERT OR REPLACE INTO tools VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    name,
                    os_name,
                    alias or name,
                    hashes["md5"],
                    hashes["sha1"],
                    hashes["sha256"],
                    hashes["sha512"],
                    len(data),
                    data,
                    now,
                ],
            )
        )
        self._bump()
        return self.get(name, os_name, binary=False)

    def get(self, name: str, os_name: str, *, binary: bool) -> dict[str, Any]:
        found = self.list(os_name=os_name, name=name, binary=binary)
        if not found:
            raise NotFound(f"no tool {name!r} for {os_name}")
        return found[0]

    def list(
        self, *, os_name: str = "", name: str = "", hash_value: str = "", binary: bool = False
    ) -> list[dict[str, Any]]:
        where, params = [], []
        if os_name:
            where.append("os = ?")
            params.append(os_name)
        if name:
            where.append("name = ?")
            params.append(name)
        if hash_value:
            col = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}.get(
                len(hash_value), "sha256"
            )
            where.append(f"{col} = ?")
            params.append(hash_value.lower())
        blob = "data" if binary else "NULL"  # the binaries only when asked for
        sql = f"SELECT name, os, alias, md5, sha1, sha256, sha512, size, {blob} FROM tools"
        if where:
            sql += " WHERE " + " AND ".join(where)
        out = []
        for r in self.db.query(sql + " ORDER BY name", params):
            item: dict[str, Any] = {
                "name": r[0],
                "os": r[1],
                "alias": r[2],
                "size": r[7],
                "metadata": {"md5": r[3], "sha1": r[4], "sha256": r[5], "sha512": r[6]},
            }
            if binary:
                import base64

                item["binary"] = base64.b64encode(bytes(r[8])).decode("ascii")
            out.append(item)
        return out

    def delete(self, name: str, os_name: str) -> None:
        self.get(name, os_name, binary=False)
        self.db.write(
            lambda cur: cur.execute("DELETE FROM tools WHERE name = ? AND os = ?", [name, os_name])
        )
        self._bump()


class Settings:
    """Key → JSON value settings (plugins such as the MISP sync keep theirs here)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, key: str, default: Any = None) -> Any:
        rows = self.db.query("SELECT value FROM settings WHERE key = ?", [key])
        return json.loads(rows[0][0]) if rows else default

    def put(self, key: str, value: Any, now: float) -> None:
        text = json.dumps(value)
        self.db.write(
            lambda cur: cur.execute(
                "INSERT OR REPLACE INTO settings VALUES (?, ?, ?)", [key, text, now]
            )
        )

    def all(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.db.query("SELECT key, value FROM settings")}

    def delete(self, key: str) -> None:
        self.db.write(lambda cur: cur.execute("DELETE FROM settings WHERE key = ?", [key]))


class Audit:
    """Append-only log of admin actions (written asynchronously by the writer thread)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(
        self, ts: float, actor: str, role: str, action: str, target: str, detail: Any = None
    ) -> None:
        text = json.dumps(detail, default=str) if detail is not None else None
        self.db.submit(
            lambda cur: cur.execute(
                "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?)",
                [ts, actor, role, action, target, text],
            )
        )

    def list(self, *, since: float = 0.0, limit: int = 1000) -> list[dict[str, Any]]:
        return self.page(since=since, limit=limit, cursor=None)[0]

    def page(
        self, *, since: float = 0.0, limit: int = 1000, cursor: str | None = None
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """Entries newest first, and the next page's cursor (None: no more)."""
        where, params = "ts >= ?", [since]
        if cursor:
            ts, actor, action, target = decode_cursor(cursor, ((int, float), str, str, str))
            where += " AND (ts < ? OR (ts = ? AND (actor, action, target) > (?, ?, ?)))"
            params += [ts, ts, actor, action, target]
        rows = self.db.query_dicts(
            f"SELECT ts, actor, role, action, target, detail FROM audit WHERE {where} "
            "ORDER BY ts DESC, actor, action, target LIMIT ?",
            [*params, limit + 1],
        )
        nxt = None
        if len(rows) > limit:
            last = rows[limit - 1]
            nxt = encode_cursor([last["ts"], last["actor"], last["action"], last["target"]])
        for row in rows[:limit]:
            row["detail"] = json.loads(row["detail"]) if row["detail"] else None
        return rows[:limit], nxt
