"""The spool's view of its data disk: ok, full, or failing with I/O errors.

`submit` never raises on I/O errors: an event that cannot be written is dropped and counted
here. Each state change (full / I/O error → recovered) is logged once, and on recovery the
events dropped meanwhile are reported to the manager as health event 9005. Recovery from a full
disk needs 256 KiB free, so a nearly full disk does not flap.
"""

from __future__ import annotations

import errno
import logging
import shutil
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from .health import HEALTH_DISK

logger = logging.getLogger(__name__)

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_RECOVER_FREE = 256 << 10  # free bytes needed before a full disk counts as recovered


class DiskHealth:
    """State of the data disk under `root` (thread-safe); `report(event_id, message, **data)`
    queues a health event."""

    def __init__(
        self, root: Path, *, wall: Callable[[], float], report: Callable[..., None]
    ) -> None:
        self.root = root
        self._wall = wall
        self._report = report
        self._lock = threading.Lock()
        self.state = "ok"  # ok | full | io-error
        self.error = ""
        self.dropped = 0  # events lost to a full or failing data disk (total)
        self._since = 0.0
        self._dropped_now = 0  # since the state left "ok"

    def dropped_one(self, ex: OSError) -> None:
        """Count one event that could not be written because of `ex`; log a state change."""
        state = "full" if ex.errno in DISK_FULL else "io-error"
        with self._lock:
            self.dropped += 1
            self._dropped_now += 1
            changed = state != self.state
            if changed:
                self.state, self.error = state, f"{ex.strerror or ex}"
                self._since = self._wall()
        if changed:
            what = "data disk full" if state == "full" else "data disk I/O error"
            logger.error(
                "%s under %s (%s): events are dropped and counted until it recovers",
                what,
                self.root,
                ex.strerror or ex,
            )

    def written(self) -> None:
        """A record was written: leave a full/failing state once there is real room again."""
        if self.state == "ok":  # racy read on purpose: the common path takes no lock
            return
        try:  # small records still fit in a nearly full disk: recover only with real room
            if shutil.disk_usage(self.root).free < _RECOVER_FREE:
                return
        except OSError:
            return
        with self._lock:
            if self.state == "ok":
                return
            state, since, dropped = self.state, self._since, self._dropped_now
            self.state, self.error, self._dropped_now = "ok", "", 0
        stamp = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds")
        logger.warning(
            "data disk %s: %d events dropped since %s",
            "recovered" if state == "full" else "writable again",
            dropped,
            stamp,
        )
        self._report(
            HEALTH_DISK,
            f"data disk {state}: events dropped",
            DroppedEvents=dropped,
            Since=stamp,
            TotalDropped=self.dropped,
        )

    def snapshot(self) -> tuple[str, str, int]:
        """(state, error, dropped) read together."""
        with self._lock:
            return self.state, self.error, self.dropped
