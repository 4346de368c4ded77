"""Which front-end runs a cluster-wide job (MISP sync): one leader per job, by PostgreSQL lock.

Embedded mode has one manager: it leads everything (`SoleLeader`). In cluster mode every
front-end runs the same workers, and a job that talks to the outside world must run once, or
MISP would get every sighting and report twice. `PgLeadership` holds one session-level
advisory lock per job on a connection of its own: PostgreSQL releases it when that session
ends, so when the leader stops, crashes or loses its network, another front-end takes the job
at its next try (every `interval` seconds). A front-end that loses its connection stops leading
at once (it cannot know whether its lock survived).
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Iterable
from typing import Any, Protocol

import psycopg

__all__ = ["Leadership", "PgLeadership", "SoleLeader", "lock_key"]

logger = logging.getLogger(__name__)
APP_NAME = "heron-leader"  # shows in pg_stat_activity
_NAMESPACE = 0x48524E00  # "HRN\0": keeps Heron's advisory lock keys apart from others'


class Leadership(Protocol):
    def leads(self, job: str) -> bool:
        """True while this manager should run `job`."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class SoleLeader:
    """Embedded mode: the only manager leads every job."""

    def leads(self, job: str) -> bool:
        return True

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None


def lock_key(job: str) -> int:
    """The advisory lock key of a job name (a positive signed 64-bit integer)."""
    return _NAMESPACE << 32 | zlib.crc32(job.encode())


class PgLeadership:
    """Session advisory locks, one per job, tried again every `interval` seconds."""

    def __init__(self, dsn: str, jobs: Iterable[str], *, interval: float = 5.0) -> None:
        self.dsn = dsn
        self.jobs = tuple(jobs)
        self.interval = interval
        self._held: frozenset[str] = frozenset()
        self._conn: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def leads(self, job: str) -> bool:
        return job in self._held

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self.try_once()
            self._thread = threading.Thread(target=self._loop, name="heron-leader", daemon=True)
            self._thread.start()

    def try_once(self) -> frozenset[str]:
        """Check the session and take the free locks; the jobs led afterwards."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self.dsn, autocommit=True, connect_timeout=5, application_name=APP_NAME
                )
            self._conn.execute("SELECT 1")
            held = set(self._held)
            for job in self.jobs:
                if job in held:
                    continue
                row = self._conn.execute(
                    "SELECT pg_try_advisory_lock(%s)", [lock_key(job)]
                ).fetchone()
                if row and row[0]:
                    held.add(job)
                    logger.info("this front-end now leads %s", job)
            self._held = frozenset(held)
        except psycopg.Error as ex:
            if self._held:
                logger.warning("lost the leadership of %s: %s", ", ".join(sorted(self._held)), ex)
            self._held = frozenset()
            self._close()
        return self._held

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.try_once()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass

    def stop(self) -> None:
        """Give the jobs up (another front-end takes them at its next try)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._held = frozenset()
        self._close()
