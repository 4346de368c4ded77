"""Detections, endpoint reports (scores) with their archive, and artifact metadata."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..core.errors import NotFound
from .database import Conn, Database
from .models import Artifact

__all__ = ["Artifacts", "DetectionRow", "Detections", "Reports"]

# (endpoint, ts, receipt, event_hash, signatures, criticality, ATT&CK technique ids or None)
DetectionRow = tuple[str, float, float, str, list[str], int, list[str] | None]


def _json_or_null(value: list[str] | None) -> str | None:
    return None if value is None else json.dumps(value)


class Detections:
    """One row per detection event received (the summary; full events live in index/)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add_many(self, rows: list[DetectionRow]) -> None:
        """Queue inserts of `(endpoint, ts, receipt, event_hash, signatures, criticality,
        attack)`; `attack`: the technique ids of the event's `Detection.ATTACK`."""
        if not rows:
            return
        params = [
            v
            for r in rows
            for v in (r[0], r[1], r[2], r[3], json.dumps(r[4]), r[5], _json_or_null(r[6]))
        ]
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(rows))
        self.db.submit(
            lambda cur: cur.execute(
                "INSERT INTO detections (endpoint, ts, receipt, event_hash, signatures, "
                f"criticality, attack) VALUES {values}",
                params,
            )
        )

    def list(
        self, endpoint: str, *, since: float, until: float, limit: int = 1000
    ) -> list[dict[str, Any]]:
        rows = self.db.query_dicts(
            "SELECT ts, receipt, event_hash, signatures, criticality FROM detections "
            "WHERE endpoint = ? AND ts BETWEEN ? AND ? ORDER BY ts DESC LIMIT ?",
            [endpoint, since, until, limit],
        )
        for row in rows:
            row["signatures"] = json.loads(row["signatures"])
        return rows

    def count(self) -> int:
        return int(self.db.query("SELECT count(*) FROM detections")[0][0])

    def prune(self, before: float) -> int:
        """Delete detections received before `before` (epoch seconds); return how many."""

        def fn(cur: Conn) -> int:
            row = cur.execute("DELETE FROM detections WHERE receipt < ?", [before]).fetchone()
            return int(row[0]) if row else 0

        return self.db.write(fn)


class Reports:
    """Persisted reducer state per endpoint and its archive."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def save_many(self, stats: dict[str, dict[str, Any]], now: float) -> None:
        if not stats:
            return
        items = [(k, json.dumps(v), now) for k, v in stats.items()]
        values = ", ".join(["(?, ?, ?)"] * len(items))
        params = [v for item in items for v in item]
        self.db.submit(
            lambda cur: cur.execute(f"INSERT OR REPLACE INTO reports VALUES {values}", params)
        )

    def merge(
        self,
        endpoint: str,
        fn: Callable[[dict[str, Any] | None], dict[str, Any]],
        now: float,
    ) -> dict[str, Any]:
        """Replace one endpoint's stats by ``fn(current stats or None)`` in one transaction
        (cluster mode: front-ends update the same endpoint; ``fn`` may run more than once)."""

        def tx(cur: Conn) -> dict[str, Any]:
            row = cur.execute("SELECT stats FROM reports WHERE endpoint = ?", [endpoint]).fetchone()
            stats = fn(json.loads(row[0]) if row else None)
            cur.execute(
                "INSERT OR REPLACE INTO reports VALUES (?, ?, ?)",
                [endpoint, json.dumps(stats), now],
            )
            return stats

        return self.db.write(tx)

    def take(self, endpoint: str) -> dict[str, Any] | None:
        """Remove one endpoint's stats and return them (None when it has none), atomically."""

        def tx(cur: Conn) -> dict[str, Any] | None:
            row = cur.execute("SELECT stats FROM reports WHERE endpoint = ?", [endpoint]).fetchone()
            cur.execute("DELETE FROM reports WHERE endpoint = ?", [endpoint])
            return json.loads(row[0]) if row else None

        return self.db.write(tx)

    def load_all(self) -> dict[str, dict[str, Any]]:
        return {k: json.loads(v) for k, v in self.db.query("SELECT endpoint, stats FROM reports")}

    def archive(self, endpoint: str, stats: dict[str, Any], now: float) -> None:
        text = json.dumps(stats)

        def fn(cur: Conn) -> None:
            cur.execute("INSERT INTO report_archive VALUES (?, ?, ?)", [endpoint, text, now])
            cur.execute("DELETE FROM reports WHERE endpoint = ?", [endpoint])

        self.db.write(fn)

    def archived(
        self, endpoint: str, *, since: float, until: float, limit: int
    ) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT stats, archived FROM report_archive WHERE endpoint = ? AND archived BETWEEN ? "
            "AND ? ORDER BY archived DESC LIMIT ?",
            [endpoint, since, until, limit],
        )
        return [dict(json.loads(s), **{"archived-time": a}) for s, a in rows]


class Artifacts:
    """Metadata of artifact files stored under `<data>/artifacts/`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, art: Artifact) -> None:
        self.db.write(
            lambda cur: cur.execute(
                "INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    art.endpoint,
                    art.pguid,
                    art.ehash,
                    art.filename,
                    art.size,
                    art.sha256,
                    art.created,
                ],
            )
        )

    def list(self, *, endpoint: str | None = None, since: float = 0.0) -> list[Artifact]:
        sql = (
            "SELECT endpoint, pguid, ehash, filename, size, sha256, created FROM artifacts "
            "WHERE created >= ?"
        )
        params: list[Any] = [since]
        if endpoint:
            sql += " AND endpoint = ?"
            params.append(endpoint)
        return [Artifact(*r) for r in self.db.query(sql + " ORDER BY created", params)]

    def delete(self, art: Artifact) -> None:
        self.db.write(
            lambda cur: cur.execute(
                "DELETE FROM artifacts WHERE endpoint = ? AND pguid = ? AND ehash = ? "
                "AND filename = ?",
                [art.endpoint, art.pguid, art.ehash, art.filename],
            )
        )

    def usage(self) -> dict[str, int]:
        """Bytes of artifacts per endpoint."""
        rows = self.db.query("SELECT endpoint, SUM(size) FROM artifacts GROUP BY endpoint")
        return {str(ep): int(total or 0) for ep, total in rows}

    def get(self, endpoint: str, pguid: str, ehash: str, filename: str) -> Artifact:
        rows = self.db.query(
            "SELECT endpoint, pguid, ehash, filename, size, sha256, created FROM artifacts "
            "WHERE endpoint = ? AND pguid = ? AND ehash = ? AND filename = ?",
            [endpoint, pguid, ehash, filename],
        )
        if not rows:
            raise NotFound(f"no artifact {pguid}/{ehash}/{filename}")
        return Artifact(*rows[0])
