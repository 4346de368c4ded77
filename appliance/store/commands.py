"""The command queue: per endpoint, with history."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..core.errors import NotFound
from .database import Conn, Database
from .models import CommandRecord, CommandState

__all__ = ["Commands"]

_CMD_COLS = (
    "id, endpoint, name, args, drop_files, fetch_files, timeout, expect_json, state, created, "
    "sent, "
    "completed, result, issuer"
)


def _command(row: tuple[Any, ...]) -> CommandRecord:
    return CommandRecord(
        id=row[0],
        endpoint=row[1],
        name=row[2],
        args=tuple(json.loads(row[3] or "[]")),
        drop=tuple(json.loads(row[4] or "[]")),
        fetch=tuple(json.loads(row[5] or "[]")),
        timeout=row[6],
        expect_json=bool(row[7]),
        state=CommandState(row[8]),
        created=row[9],
        sent=row[10],
        completed=row[11],
        result=json.loads(row[12]) if row[12] else None,
        issuer=row[13] or "",
    )


class Commands:
    """Per-endpoint command queue with history (not WHIDS's single overwritten slot)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.on_add: list[Callable[[str], None]] = []  # fn(endpoint uuid): wakes long-polls

    def add(self, cmd: CommandRecord) -> CommandRecord:
        self.db.write(
            lambda cur: cur.execute(
                f"INSERT INTO commands ({_CMD_COLS}, seq) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?, nextval('command_seq'))",
                [
                    cmd.id,
                    cmd.endpoint,
                    cmd.name,
                    json.dumps(list(cmd.args)),
                    json.dumps(list(cmd.drop)),
                    json.dumps(list(cmd.fetch)),
                    cmd.timeout,
                    cmd.expect_json,
                    cmd.state.value,
                    cmd.created,
                    cmd.issuer,
                ],
            )
        )
        for fn in self.on_add:
            fn(cmd.endpoint)
        return cmd

    def get(self, cmd_id: str, *, endpoint: str | None = None) -> CommandRecord:
        rows = self.db.query(f"SELECT {_CMD_COLS} FROM commands WHERE id = ?", [cmd_id])
        if not rows or (endpoint is not None and rows[0][1] != endpoint):
            raise NotFound(f"no command {cmd_id}")
        return _command(rows[0])

    def history(self, endpoint: str, *, limit: int = 100) -> list[CommandRecord]:
        rows = self.db.query(
            f"SELECT {_CMD_COLS} FROM commands WHERE endpoint = ? ORDER BY seq DESC LIMIT ?",
            [endpoint, limit],
        )
        return [_command(r) for r in rows]

    def next_for(self, endpoint: str, now: float) -> CommandRecord | None:
        """Deliver the oldest queued command of `endpoint` (marks it sent)."""

        def fn(cur: Conn) -> CommandRecord | None:
            row = cur.execute(
                f"SELECT {_CMD_COLS} FROM commands WHERE endpoint = ? AND state = 'queued' "
                "ORDER BY seq LIMIT 1",
                [endpoint],
            ).fetchone()
            if row is None:
                return None
            cur.execute("UPDATE commands SET state = 'sent', sent = ? WHERE id = ?", [now, row[0]])
            return _command(row)

        return self.db.write(fn)

    def complete(self, endpoint: str, cmd_id: str, result: dict[str, Any], now: float) -> bool:
        """Store a result; False if the command is unknown, foreign or already completed."""

        def fn(cur: Conn) -> bool:
            row = cur.execute(
                "SELECT state FROM commands WHERE id = ? AND endpoint = ?", [cmd_id, endpoint]
            ).fetchone()
            if row is None or row[0] in ("completed", "cancelled"):
                return False
            cur.execute(
                "UPDATE commands SET state = 'completed', completed = ?, result = ? WHERE id = ?",
                [now, json.dumps(result), cmd_id],
            )
            return True

        return self.db.write(fn)

    def cancel(self, endpoint: str, cmd_id: str) -> bool:
        def fn(cur: Conn) -> bool:
            row = cur.execute(
                "SELECT state FROM commands WHERE id = ? AND endpoint = ?", [cmd_id, endpoint]
            ).fetchone()
            if row is None or row[0] != "queued":
                return False
            cur.execute("UPDATE commands SET state = 'cancelled' WHERE id = ?", [cmd_id])
            return True

        return self.db.write(fn)

    def expire(self, now: float, result_timeout: float) -> int:
        """Time out sent commands whose result never came."""

        def fn(cur: Conn) -> int:
            rows = cur.execute(
                "SELECT id FROM commands WHERE state = 'sent' AND sent + timeout + ? < ?",
                [result_timeout, now],
            ).fetchall()
            if rows:
                cur.execute(
                    "UPDATE commands SET state = 'timeout', completed = ? "
                    "WHERE state = 'sent' AND sent + timeout + ? < ?",
                    [now, result_timeout, now],
                )
            return len(rows)

        return self.db.write(fn)

    def queued_endpoints(self) -> set[str]:
        """Endpoints with at least one queued command."""
        rows = self.db.query("SELECT DISTINCT endpoint FROM commands WHERE state = 'queued'")
        return {r[0] for r in rows}

    def pending_count(self) -> int:
        return int(self.db.query("SELECT count(*) FROM commands WHERE state = 'queued'")[0][0])
