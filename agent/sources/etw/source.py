"""The ``etw`` source: one real-time ETW session (+ the Security log), events queued for the agent.

A session with our name left over by a killed agent keeps running (ETW sessions are system-wide,
pywintrace#45), so it is stopped by name at start and at close.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from agent.errors import SourceError

from .backend import EtwBackend, PywintraceBackend
from .providers import PROVIDERS, EtwProvider
from .render import KernelFileFilter, render_etw

if TYPE_CHECKING:
    from agent.config import EtwConfig

__all__ = ["SECURITY_SESSION", "EtwSource"]

logger = logging.getLogger(__name__)

SECURITY_SESSION = "EventLog-Security"


class EtwSource:
    """Real-time ETW consumer (Windows; any ``EtwBackend`` elsewhere, for tests)."""

    name = "etw"
    live = True
    lossless = False

    def __init__(
        self,
        config: EtwConfig,
        *,
        computer: str,
        buffer: int = 50_000,
        backend: EtwBackend | None = None,
    ) -> None:
        unknown = [p for p in config.providers if p not in PROVIDERS]
        if unknown:
            raise SourceError(f"unknown ETW providers: {unknown}")
        self.config = config
        self.computer = computer
        self._backend = backend
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(buffer)
        self._closed = threading.Event()
        self._kfile = KernelFileFilter()
        self.dropped = 0  # our queue was full
        self.etw_lost = 0  # lost by ETW itself (session buffers)
        self.error = ""  # a consumer that failed or stopped (the source runs on without it)
        self._sessions: list[Any] = []

    @property
    def lost(self) -> int:
        """Events lost before reaching the agent: ETW's buffers plus our full queue."""
        return self.dropped + self.etw_lost

    def _callback(self, item: tuple[int, dict[str, Any]]) -> None:
        event_id, record = item
        try:
            event = render_etw(event_id, record, computer=self.computer)
        except (KeyError, TypeError, ValueError):
            logger.error("cannot render ETW event %r", event_id, exc_info=True)
            return
        if event["Event"]["System"]["Channel"].startswith(
            "Microsoft-Windows-Kernel-File"
        ) and not self._kfile.accept(event):
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def providers(self) -> list[EtwProvider]:
        """Providers enabled in our session (Kernel-File only when configured)."""
        names = list(self.config.providers)
        if self.config.kernel_file and "Microsoft-Windows-Kernel-File" not in names:
            names.append("Microsoft-Windows-Kernel-File")
        return [PROVIDERS[n] for n in names]

    def _start(self) -> EtwBackend:
        backend = self._backend or PywintraceBackend()
        name = self.config.session_name
        if backend.stop_session(name):
            logger.warning("stopped stale ETW session %r (left by a previous agent)", name)
        self._sessions.append(backend.start_session(name, self.providers(), self._callback))
        if self.config.security_log:
            try:
                self._sessions.append(backend.start_consumer(SECURITY_SESSION, self._callback))
            except SourceError as ex:  # Sysmon & co. still run; status says it
                self.error = str(ex)
                logger.error("%s", ex)
        logger.info("ETW session %r started", name)
        return backend

    CHECK_INTERVAL = 5.0  # seconds between consumer health / lost-event checks

    def events(self) -> Iterator[dict[str, Any]]:
        backend = self._start()
        next_check = time.monotonic() + self.CHECK_INTERVAL
        try:
            while not self._closed.is_set():
                try:
                    yield self._queue.get(timeout=0.25)
                except queue.Empty:
                    pass
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.CHECK_INTERVAL
                    self._check()
        finally:
            self._stop_sessions(backend)

    def _check(self) -> None:
        """Count ETW lost events; a dead main session ends the source, a dead consumer is noted."""
        lost = 0
        for i, running in enumerate(self._sessions):
            count = getattr(running, "lost", None)
            if callable(count):
                try:
                    lost += int(count())
                except Exception:
                    logger.debug("ETW query failed", exc_info=True)
            check = getattr(running, "error", None)
            err = check() if callable(check) else ""
            if err and i == 0:
                raise SourceError(err)
            if err and err != self.error:
                self.error = err
                logger.error("%s", err)
        self.etw_lost = lost

    def _stop_sessions(self, backend: EtwBackend) -> None:
        for s in reversed(self._sessions):
            try:
                s.stop()
            except Exception:
                logger.error("ETW stop failed", exc_info=True)
        self._sessions.clear()
        backend.stop_session(self.config.session_name)  # by name too: never leave it running

    def close(self) -> None:
        self._closed.set()
