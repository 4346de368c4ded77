"""The running manager's start and stop order, in one place.

Start: the context (fleet store, event store and its index writer, services) is open already;
then both listeners (`ManagerServer`), then the extensions' background work (MISP worker) and the
retention worker, then the local admin channel (`localadmin.publish`). Stop runs the same steps
backwards and closes the context last (streams, ingest, event store and index writer, fleet
store), so no worker or request outlives what it writes to.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..services.retention import RetentionWorker, start_retention_worker
from ..transport.server import Bound, ManagerServer
from .context import AppContext
from .localadmin import publish, withdraw

__all__ = ["Manager"]

logger = logging.getLogger(__name__)


class Manager:
    """One manager process over an open context: `start()`, then `stop()` (idempotent)."""

    def __init__(self, ctx: AppContext, data_dir: Path) -> None:
        self.ctx = ctx
        self.data_dir = data_dir
        self.server = ManagerServer(ctx)
        self.retention: RetentionWorker | None = None
        self._state = "open"  # -> "started" -> "stopped"

    def start(self) -> Bound:
        """Serve both listeners and start the workers; on a failure, stop what started."""
        if self._state != "open":
            raise RuntimeError(f"manager already {self._state}")
        self._state = "started"
        try:
            bound = self.server.start()
            self.ctx.leadership.start()
            self.ctx.extensions.start()
            self.retention = start_retention_worker(self.ctx.retention)
            publish(self.ctx, self.data_dir, bound.admin)  # CLI admin commands while it runs
        except BaseException:
            self.stop()
            raise
        return bound

    def stop(self) -> None:
        """Withdraw the admin channel, stop the workers and listeners, close the stores."""
        if self._state == "stopped":
            return
        started, self._state = self._state == "started", "stopped"
        if not started:
            self.ctx.close()
            return
        logger.info("shutting down")
        self.ctx.begin_shutdown()  # streams, hunts and long-polls end first: SIGTERM within 30 s
        withdraw(self.data_dir)
        if self.retention is not None:
            self.retention.stop()
            self.retention = None
        self.ctx.extensions.stop()
        self.ctx.leadership.stop()
        self.server.close()
        self.ctx.close(drain_index=False)  # the journal replays the index backlog at next start
