"""Alert triage state over the `detections` table: status, assignee and comments per detection.

An alert is one detection row, named by `(endpoint, event_hash)`. A detection without a row in
`alert_state` is `new`. Lists use keyset (cursor) paging so the 10,000th row costs what the first
does; the cursor is the last row's sort key, opaque to clients (base64 of a JSON array).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from ..core.errors import InvalidParam, NotFound
from .database import Conn, Database
from .keyset import decode_cursor, encode_cursor

__all__ = ["AlertFilter", "AlertStatus", "Alerts", "OPEN_STATUSES"]

DDL = """
CREATE TABLE IF NOT EXISTS alert_state (
    endpoint VARCHAR, event_hash VARCHAR, status VARCHAR, assignee VARCHAR, updated DOUBLE,
    updated_by VARCHAR, PRIMARY KEY (endpoint, event_hash));
CREATE TABLE IF NOT EXISTS alert_comments (
    endpoint VARCHAR, event_hash VARCHAR, ts DOUBLE, author VARCHAR, text VARCHAR);
"""
MAX_COMMENT = 8192


class AlertStatus(enum.Enum):
    NEW = "new"
    IN_PROGRESS = "in_progress"
    CLOSED = "closed"
    FALSE_POSITIVE = "false_positive"


OPEN_STATUSES = (AlertStatus.NEW, AlertStatus.IN_PROGRESS)
_SORTS = ("newest", "critical")


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """What a list shows. `status`: a status, `open` (new + in progress) or `all`."""

    status: str = "open"
    sort: str = "newest"
    endpoint: str = ""
    assignee: str | None = None  # None: anyone; "": unassigned
    signature: str = ""
    min_criticality: int = 0
    since: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in ("open", "all") and self.status not in _values():
            raise InvalidParam(f"status must be open, all or one of {', '.join(_values())}")
        if self.sort not in _SORTS:
            raise InvalidParam("sort must be newest or critical")


def _values() -> list[str]:
    return [s.value for s in AlertStatus]


def parse_status(value: Any) -> AlertStatus:
    try:
        return AlertStatus(value)
    except ValueError as ex:
        raise InvalidParam(f"status must be one of {', '.join(_values())}") from ex


def _decode_cursor(cursor: str, sort: str) -> list[Any]:
    number = (int, float)
    types = (number, number, str) if sort == "critical" else (number, str)
    return decode_cursor(cursor, types)


_KEY = "(d.endpoint || '/' || d.event_hash)"
_STATUS = "coalesce(a.status, 'new')"
_SELECT = (
    "SELECT d.endpoint, d.ts, d.receipt, d.event_hash, d.signatures, d.criticality, d.attack, "
    f"{_STATUS} AS status, coalesce(a.assignee, '') AS assignee, a.updated, "
    f"coalesce(a.updated_by, '') AS updated_by, coalesce(e.hostname, '') AS hostname, {_KEY} AS k "
    "FROM detections d LEFT JOIN alert_state a "
    "ON a.endpoint = d.endpoint AND a.event_hash = d.event_hash "
    "LEFT JOIN endpoints e ON e.uuid = d.endpoint"
)


class Alerts:
    """Triage state of detections; every change goes through the writer thread."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.write(lambda cur: cur.execute(DDL))

    # --- reads --------------------------------------------------------------------------

    def _where(self, f: AlertFilter) -> tuple[list[str], list[Any]]:
        where: list[str] = ["d.ts >= ?"]
        params: list[Any] = [f.since]
        if f.status == "open":
            where.append(f"{_STATUS} IN ('new', 'in_progress')")
        elif f.status != "all":
            where.append(f"{_STATUS} = ?")
            params.append(f.status)
        if f.endpoint:
            where.append("d.endpoint = ?")
            params.append(f.endpoint)
        if f.assignee is not None:
            where.append("coalesce(a.assignee, '') = ?")
            params.append(f.assignee)
        if f.signature:
            where.append("list_contains(from_json(d.signatures, '[\"VARCHAR\"]'), ?)")
            params.append(f.signature)
        if f.min_criticality:
            where.append("d.criticality >= ?")
            params.append(f.min_criticality)
        return where, params

    def page(
        self, f: AlertFilter, *, limit: int = 100, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page: `{alerts, next, total}`; `next` is None on the last page."""
        where, params = self._where(f)
        total = int(
            self.db.query(
                "SELECT count(*) FROM detections d LEFT JOIN alert_state a "
                "ON a.endpoint = d.endpoint AND a.event_hash = d.event_hash WHERE "
                + " AND ".join(where),
                params,
            )[0][0]
        )
        if cursor:
            key = _decode_cursor(cursor, f.sort)
            if f.sort == "critical":
                where.append(
                    "(d.criticality < ? OR (d.criticality = ? AND (d.ts < ? OR (d.ts = ? AND "
                    f"{_KEY} < ?))))"
                )
                params += [key[0], key[0], key[1], key[1], key[2]]
            else:
                where.append(f"(d.ts < ? OR (d.ts = ? AND {_KEY} < ?))")
                params += [key[0], key[0], key[1]]
        order = "d.ts DESC, k DESC"
        if f.sort == "critical":
            order = "d.criticality DESC, " + order
        rows = self.db.query_dicts(
            f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?", params + [limit + 1]
        )
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = None
        if more and rows:
            last = rows[-1]
            nxt = encode_cursor(
                [last["criticality"], last["ts"], last["k"]]
                if f.sort == "critical"
                else [last["ts"], last["k"]]
            )
        counts = self._comment_counts(rows)
        return {
            "alerts": [_public(r, counts.get((r["endpoint"], r["event_hash"]), 0)) for r in rows],
            "next": nxt,
            "total": total,
        }

    def signature_counts(self, f: AlertFilter) -> list[tuple[list[str], int]]:
        """(signatures, detections) per distinct signature list, for the ATT&CK matrix."""
        where, params = self._where(f)
        rows = self.db.query(
            "SELECT d.signatures, count(*) FROM detections d LEFT JOIN alert_state a "
            "ON a.endpoint = d.endpoint AND a.event_hash = d.event_hash WHERE "
            + " AND ".join(where)
            + " GROUP BY d.signatures",
            params,
        )
        return [(json.loads(sigs or "[]"), int(n)) for sigs, n in rows]

    def _comment_counts(self, rows: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
        if not rows:
            return {}
        hashes = sorted({r["event_hash"] for r in rows})
        marks = ", ".join("?" * len(hashes))
        found = self.db.query(
            "SELECT endpoint, event_hash, count(*) FROM alert_comments "
            f"WHERE event_hash IN ({marks}) GROUP BY ALL",
            hashes,
        )
        return {(e, h): int(n) for e, h, n in found}

    def get(self, endpoint: str, event_hash: str) -> dict[str, Any]:
        """One alert with its comments, oldest first."""
        rows = self.db.query_dicts(
            f"{_SELECT} WHERE d.endpoint = ? AND d.event_hash = ? ORDER BY d.ts DESC LIMIT 1",
            [endpoint, event_hash],
        )
        if not rows:
            raise NotFound(f"no detection {event_hash!r} on endpoint {endpoint}")
        comments = self.db.query_dicts(
            "SELECT ts, author, text FROM alert_comments WHERE endpoint = ? AND event_hash = ? "
            "ORDER BY ts",
            [endpoint, event_hash],
        )
        alert = _public(rows[0], len(comments))
        alert["comments"] = comments
        return alert

    # --- writes -------------------------------------------------------------------------

    def update(
        self,
        refs: list[tuple[str, str]],
        *,
        by: str,
        now: float,
        status: AlertStatus | None = None,
        assignee: str | None = None,
        comment: str | None = None,
    ) -> list[dict[str, Any]]:
        """Apply one change to every alert of `refs` (in one transaction); return the changes.

        Each change is `{endpoint, event_hash, status: [old, new]?, assignee: [old, new]?,
        comment?}`; an unknown alert raises NotFound and nothing is written.
        """

        def fn(cur: Conn) -> list[dict[str, Any]]:
            changes: list[dict[str, Any]] = []
            for endpoint, ehash in refs:
                if not cur.execute(
                    "SELECT 1 FROM detections WHERE endpoint = ? AND event_hash = ? LIMIT 1",
                    [endpoint, ehash],
                ).fetchone():
                    raise NotFound(f"no detection {ehash!r} on endpoint {endpoint}")
                row = cur.execute(
                    "SELECT status, assignee FROM alert_state "
                    "WHERE endpoint = ? AND event_hash = ?",
                    [endpoint, ehash],
                ).fetchone()
                old_status, old_assignee = (row[0], row[1] or "") if row else ("new", "")
                new_status = status.value if status else old_status
                new_assignee = assignee if assignee is not None else old_assignee
                change: dict[str, Any] = {"endpoint": endpoint, "event_hash": ehash}
                if new_status != old_status:
                    change["status"] = [old_status, new_status]
                if new_assignee != old_assignee:
                    change["assignee"] = [old_assignee, new_assignee]
                if len(change) > 2:
                    cur.execute(
                        "INSERT OR REPLACE INTO alert_state VALUES (?, ?, ?, ?, ?, ?)",
                        [endpoint, ehash, new_status, new_assignee, now, by],
                    )
                if comment:
                    cur.execute(
                        "INSERT INTO alert_comments VALUES (?, ?, ?, ?, ?)",
                        [endpoint, ehash, now, by, comment],
                    )
                    change["comment"] = comment
                changes.append(change)
            return changes

        return self.db.write(fn)


def _public(row: dict[str, Any], comments: int) -> dict[str, Any]:
    return {
        "endpoint": row["endpoint"],
        "hostname": row["hostname"],
        "event_hash": row["event_hash"],
        "ts": row["ts"],
        "receipt": row["receipt"],
        "signatures": json.loads(row["signatures"] or "[]"),
        "criticality": row["criticality"],
        # None: stored before detections kept their ATT&CK (the API fills it from the rules)
        "attack": json.loads(row["attack"]) if row.get("attack") else None,
        "status": row["status"],
        "assignee": row["assignee"],
        "updated": row["updated"],
        "updated_by": row["updated_by"],
        "comments": comments,
    }
