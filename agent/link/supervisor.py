"""The link's threads, each restarted with back-off when its loop crashes.

Each crash is logged with its traceback, kept in `Supervisor.threads` (the link's `status()` and
counters) and reported to the manager as a health event (EventID 9006).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

HEALTH_THREAD_CRASH = 9006  # EventID: a link thread crashed and was restarted


class Supervisor:
    """Runs named loops in daemon threads until `stop` is set; restarts a loop that crashes."""

    def __init__(
        self,
        stop: threading.Event,
        *,
        wall: Callable[[], float],
        report: Callable[[dict[str, Any]], None],
    ) -> None:
        self._stop = stop
        self._wall = wall
        self._report = report
        self.threads: dict[str, dict[str, Any]] = {}  # name -> alive, restarts, last error
        self._running: list[threading.Thread] = []

    @property
    def started(self) -> bool:
        return bool(self._running)

    def start(self, name: str, target: Callable[[], None]) -> None:
        self.threads[name] = {
            "alive": True,
            "restarts": 0,
            "last_error": "",
            "last_crash": None,
        }
        t = threading.Thread(
            target=self._supervise, args=(name, target), name=f"heron-link-{name}", daemon=True
        )
        t.start()
        self._running.append(t)

    def join(self, timeout: float) -> None:
        """Wait for every thread (the caller has set `stop`)."""
        for t in self._running:
            t.join(timeout)
        self._running.clear()

    def _supervise(self, name: str, target: Callable[[], None]) -> None:
        """Run `target` until the link stops; restart it (with backoff) when it crashes."""
        info = self.threads[name]
        delay = 1.0
        while not self._stop.is_set():
            try:
                target()
                if self._stop.is_set():
                    break
                raise RuntimeError(f"{name} loop returned while the link runs")
            except Exception as ex:
                err = f"{type(ex).__name__}: {ex}"
                info["restarts"] += 1
                info["last_error"] = err
                info["last_crash"] = self._wall()
                logger.error(
                    "link %s thread crashed (%s); restarting in %.0fs",
                    name,
                    err,
                    delay,
                    exc_info=True,
                )
                try:
                    self._report(
                        {
                            "EventID": HEALTH_THREAD_CRASH,
                            "Message": f"link {name} thread crashed and was restarted",
                            "Thread": name,
                            "Error": err[:500],
                            "Restarts": info["restarts"],
                        }
                    )
                except Exception:
                    logger.debug("cannot queue the crash report", exc_info=True)
                self._stop.wait(delay)
                delay = min(delay * 2, 60.0)
        info["alive"] = False
