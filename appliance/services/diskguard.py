"""Free-space guard: writes are refused with 503 + Retry-After before the disk is full.

A full disk turned every agent's `/logs` into a 500 (the journal write failed). With at least
`limits.min_free_bytes` kept free, ingest and uploads answer 503 (agents retry with backoff,
nothing is lost on their side) and `/healthz` reports `disk.ok: false` until space returns.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ..core.errors import Unavailable

__all__ = ["DiskGuard"]

CHECK_INTERVAL = 1.0  # seconds a free-space reading is reused


class DiskGuard:
    """Reads the data directory's free space (at most once a second) against a floor."""

    def __init__(
        self,
        path: Path,
        min_free: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        usage: Callable[[Path], int] | None = None,
        retry_after: int = 60,
    ) -> None:
        self.path = path
        self.min_free = min_free
        self.clock = clock
        self.usage = usage or (lambda p: shutil.disk_usage(p).free)
        self.retry_after = retry_after
        self.refused = 0
        self._free = -1
        self._read_at = float("-inf")

    def free(self) -> int:
        now = self.clock()
        if now - self._read_at >= CHECK_INTERVAL:
            try:
                self._free = self.usage(self.path)
            except OSError:
                self._free = -1
            self._read_at = now
        return self._free

    @property
    def ok(self) -> bool:
        return self.min_free <= 0 or self.free() < 0 or self.free() >= self.min_free

    def check(self, what: str) -> None:
        """Unavailable (503 + Retry-After) while less than `min_free` bytes are free."""
        if not self.ok:
            self.refused += 1
            raise Unavailable(
                f"{what}: the manager's disk is almost full ({self.free()} bytes free, "
                f"limits.min_free_bytes = {self.min_free})",
                retry_after=self.retry_after,
            )
