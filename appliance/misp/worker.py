"""`MispWorker`: runs the MISP sync's due work on a daemon thread."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

__all__ = ["MispWorker"]

logger = logging.getLogger(__name__)


class _Pending(Protocol):
    def run_pending(self) -> None: ...


class MispWorker:
    """Runs `run_pending()` of a MispSync (or of every instance) on a daemon thread.

    One call every `interval` seconds.
    """

    def __init__(self, sync: _Pending, *, interval: float = 1.0) -> None:
        self.sync = sync
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> MispWorker:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="misp-sync", daemon=True)
            self._thread.start()
            logger.info("MISP sync worker started")
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync.run_pending()
            except Exception:
                logger.error("MISP sync worker iteration failed", exc_info=True)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # a request to a hung peer may hold the (daemon) thread for its
            # timeouts; its state writes are atomic, so shutdown does not wait for it long.
            self._thread.join(timeout=3)
            self._thread = None
            logger.info("MISP sync worker stopped")

    def __enter__(self) -> MispWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
