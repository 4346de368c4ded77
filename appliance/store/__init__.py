"""The manager's fleet store (DuckDB, one writer thread). Resources never import duckdb."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from .alerts import Alerts
from .commands import Commands
from .content import Audit, Documents, Iocs, RulesTable, Settings, Tools
from .database import Database, DbState
from .fleet import Certs, Endpoints, Tokens, Users
from .models import (
    Artifact,
    CertRecord,
    CommandRecord,
    CommandState,
    Endpoint,
    EndpointStatus,
    Role,
    Token,
    User,
)
from .reports import Artifacts, Detections, Reports

__all__ = [
    "ChangeFeed",
    "Artifact",
    "CertRecord",
    "CommandRecord",
    "CommandState",
    "Database",
    "DbState",
    "Endpoint",
    "EndpointStatus",
    "Role",
    "Store",
    "Token",
    "User",
]


class ChangeFeed:
    """Changes other front-ends made (cluster mode: PostgreSQL NOTIFY), by topic: callers drop
    what they cached. Embedded mode has no other front-end: nothing is ever announced."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Callable[[], None]]] = {}

    def subscribe(self, topic: str, fn: Callable[[], None]) -> None:
        self._subscribers.setdefault(topic, []).append(fn)

    def announce(self, topic: str) -> None:
        for fn in self._subscribers.get(topic, ()):
            try:
                fn()
            except Exception:
                logging.getLogger(__name__).exception("change subscriber of %s failed", topic)


class Store:
    """Every fleet table, over one Database. A context manager; `close()` is idempotent."""

    shared = False  # cluster mode: other front-ends write the same rows (store.postgres)

    def __init__(self, path: Path | str = ":memory:", *, db: Database | None = None) -> None:
        # cluster mode hands in a PostgreSQL database (appliance.store.postgres)
        self.db = db if db is not None else Database(path)
        self.changes = ChangeFeed()
        self.users = Users(self.db)
        self.endpoints = Endpoints(self.db)
        self.tokens = Tokens(self.db)
        self.certs = Certs(self.db)
        self.commands = Commands(self.db)
        self.iocs = Iocs(self.db)
        self.rules = RulesTable(self.db)
        self.documents = Documents(self.db)
        self.tools = Tools(self.db)
        self.settings = Settings(self.db)
        self.audit = Audit(self.db)
        self.detections = Detections(self.db)
        self.reports = Reports(self.db)
        self.artifacts = Artifacts(self.db)
        self.alerts = Alerts(self.db)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
