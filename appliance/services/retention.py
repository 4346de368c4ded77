"""Retention and index maintenance: the `[retention]` pass and its background worker.

One pass (`Retention.run_once`) calls `EventStore.apply_retention(max_age=, max_bytes=)`, then
`EventStore.merge_segments(wait=False)` (when `merge` is on: commit and collect files, without
waiting for the merges in flight), and deletes the fleet store's detection summaries received
before the same age limit. It logs one INFO line, counts what it removed in
/metrics and returns a `RetentionResult`. `RetentionWorker` runs a pass every `interval` seconds
of the injected clock on a daemon thread; `POST /maintenance/retention` runs one now.

The manager's lifecycle (`runtime/lifecycle.py`) starts the worker with
`start_retention_worker(ctx.retention)` after the listeners and stops it at shutdown, beside the
MISP worker. An event store without retention (a test double) only gets the fleet pruning.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..core.config import RetentionConfig
from ..core.metrics import Metrics

if TYPE_CHECKING:
    from ..store.reports import Detections
    from .artifacts import ArtifactStore

__all__ = [
    "Retention",
    "RetentionResult",
    "RetentionWorker",
    "start_retention_worker",
]

logger = logging.getLogger(__name__)

FIRST_PASS_MAX_DELAY = 300.0  # the first periodic pass runs min(interval, this) after start
DAY = 86400.0


@runtime_checkable
class RetentionStore(Protocol):
    """The part of `index.EventStore` a pass uses."""

    def apply_retention(
        self, *, max_age: timedelta | None = None, max_bytes: int | None = None
    ) -> int: ...

    def merge_segments(self, *, wait: bool = True) -> int: ...

    def stats(self) -> dict[str, Any]: ...

    def disk_usage(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """What one pass did.

    Attributes:
        started: Clock time the pass started (epoch seconds).
        seconds: Wall time the pass took.
        max_age_days: The age limit applied (0: none).
        max_bytes: The size cap applied (0: none).
        events_removed: Events dropped from the event store (None: store without retention).
        min_seq: Lowest sequence number kept after the pass (None: no retention support).
        detections_removed: Fleet-store detection summaries deleted by age.
        segments: Index segments after merging (None: no merge ran).
        bytes_before: Event store bytes on disk before the pass (None: unknown).
        bytes_after: Event store bytes on disk after the pass (None: unknown).
        artifacts_removed: Artifact files deleted (age, then per-endpoint quota).
        artifact_bytes_removed: Their bytes.
        artifacts_by_endpoint: endpoint → {files, bytes} deleted.
    """

    started: float
    seconds: float
    max_age_days: int
    max_bytes: int
    events_removed: int | None
    min_seq: int | None
    detections_removed: int
    segments: int | None
    bytes_before: int | None
    bytes_after: int | None
    artifacts_removed: int = 0
    artifact_bytes_removed: int = 0
    artifacts_by_endpoint: dict[str, dict[str, int]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Retention:
    """Runs retention passes over the event store and the fleet detections table.

    Args:
        events: The event store (`index.EventStore`; others are skipped).
        detections: The fleet store's `Detections` table (has `prune(before)`), or None.
        config: The `[retention]` section.
        clock: Epoch seconds (fleet detection cutoff, results).
        metrics: Registry the counters are added to, or None.
        artifacts: The artifact service (has `prune`), or None.
    """

    def __init__(
        self,
        *,
        events: Any,
        detections: Detections,
        config: RetentionConfig,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        artifacts: ArtifactStore | None = None,
    ) -> None:
        self.artifacts = artifacts
        self.events = events
        self.detections = detections
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.runs = 0
        self.last: RetentionResult | None = None
        self._lock = threading.Lock()
        if metrics is not None:
            metrics.counter("heron_retention_runs_total", "retention passes run")
            metrics.counter("heron_retention_events_removed_total", "events dropped by retention")
            metrics.counter(
                "heron_retention_detections_removed_total",
                "fleet detection summaries dropped by retention",
            )
            metrics.counter(
                "heron_retention_artifacts_removed_total",
                "artifact files deleted by retention (age or per-endpoint quota)",
            )
            metrics.gauge(
                "heron_retention_last_run",
                "clock time of the last retention pass (0: none yet)",
                lambda: self.last.started if self.last is not None else 0.0,
            )

    @property
    def running(self) -> bool:
        return self._lock.locked()

    def run_once(self, *, blocking: bool = True) -> RetentionResult | None:
        """Run one pass; with `blocking=False`, return None when a pass is already running."""
        if not self._lock.acquire(blocking=blocking):
            return None
        try:
            return self._run()
        finally:
            self._lock.release()

    def _run(self) -> RetentionResult:
        cfg = self.config
        started = self.clock()
        t0 = time.monotonic()
        max_age = timedelta(days=cfg.max_age_days) if cfg.max_age_days > 0 else None
        max_bytes = cfg.max_bytes if cfg.max_bytes > 0 else None
        removed: int | None = None
        min_seq: int | None = None
        segments: int | None = None
        before: int | None = None
        after: int | None = None
        store = self.events if isinstance(self.events, RetentionStore) else None
        if store is not None:
            before = int(store.disk_usage()["total"])
            old_min = int(store.stats()["min_seq"])
            min_seq = old_min
            if max_age is not None or max_bytes is not None:
                min_seq = int(store.apply_retention(max_age=max_age, max_bytes=max_bytes))
            removed = max(0, min_seq - old_min)  # sequence numbers are consecutive per event
            if cfg.merge:  # never waits for merges in flight: indexing would stop meanwhile
                segments = int(store.merge_segments(wait=False))
            after = int(store.disk_usage()["total"])
        pruned = 0
        if max_age is not None and self.detections is not None:
            pruned = int(self.detections.prune(started - cfg.max_age_days * DAY))
        art: dict[str, Any] = {"files": 0, "bytes": 0, "by_endpoint": {}}
        if self.artifacts is not None:
            art_age = cfg.artifact_max_age_days
            art = self.artifacts.prune(
                before=started - art_age * DAY if art_age > 0 else None,
                endpoint_max_bytes=cfg.artifact_endpoint_max_bytes,
            )
        result = RetentionResult(
            started=started,
            seconds=round(time.monotonic() - t0, 3),
            max_age_days=cfg.max_age_days,
            max_bytes=cfg.max_bytes,
            events_removed=removed,
            min_seq=min_seq,
            detections_removed=pruned,
            segments=segments,
            bytes_before=before,
            bytes_after=after,
            artifacts_removed=int(art["files"]),
            artifact_bytes_removed=int(art["bytes"]),
            artifacts_by_endpoint=dict(art["by_endpoint"]),
        )
        self.runs += 1
        self.last = result
        if self.metrics is not None:
            self.metrics.inc("heron_retention_runs_total")
            self.metrics.inc("heron_retention_events_removed_total", float(removed or 0))
            self.metrics.inc("heron_retention_detections_removed_total", float(pruned))
            self.metrics.inc("heron_retention_artifacts_removed_total", float(art["files"]))
        logger.info(
            "retention: removed %s events (kept seq >= %s) and %d fleet detections "
            "(max_age_days=%d, max_bytes=%d); %d artifact files (%d bytes); segments %s; "
            "event store %s -> %s bytes in %.2f s",
            "n/a" if removed is None else removed,
            "n/a" if min_seq is None else min_seq,
            pruned,
            cfg.max_age_days,
            cfg.max_bytes,
            result.artifacts_removed,
            result.artifact_bytes_removed,
            "not merged" if segments is None else segments,
            before,
            after,
            result.seconds,
        )
        return result


class RetentionWorker:
    """Runs `Retention.run_once()` on a daemon thread every `interval` clock seconds.

    The first pass is due `first_delay` seconds after `start()` (default min(interval, 300));
    the thread looks at the clock every `tick` real seconds, so a test clock can drive it.
    """

    def __init__(
        self,
        retention: Retention,
        *,
        interval: float,
        clock: Callable[[], float] = time.time,
        first_delay: float | None = None,
        tick: float = 1.0,
    ) -> None:
        if interval <= 0:
            raise ValueError("retention interval must be positive")
        self.retention = retention
        self.interval = interval
        self.clock = clock
        if first_delay is None:
            first_delay = min(interval, FIRST_PASS_MAX_DELAY)
        self.first_delay = first_delay
        self.tick = tick
        self.next_due = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> RetentionWorker:
        if self._thread is None:
            self._stop.clear()
            self.next_due = self.clock() + self.first_delay
            self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)
            self._thread.start()
            logger.info("retention worker started (every %.0f s)", self.interval)
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = self.clock()
            if now >= self.next_due:
                self.next_due = now + self.interval
                try:
                    self.retention.run_once(blocking=False)  # skipped while the API runs one
                except Exception:
                    if self._stop.is_set():
                        break  # the stores are closing under us
                    logger.error("retention pass failed", exc_info=True)
            self._stop.wait(max(0.0, min(self.tick, self.next_due - self.clock())))

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread; a pass in progress finishes first (up to `timeout` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            if self._thread.is_alive():
                logger.warning("retention worker still busy after %.0f s; not waiting", timeout)
            self._thread = None
            logger.info("retention worker stopped")

    def __enter__(self) -> RetentionWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_retention_worker(retention: Retention, *, tick: float = 1.0) -> RetentionWorker | None:
    """Start the periodic pass; None when `[retention] interval = 0`."""
    interval = float(retention.config.interval)
    if interval <= 0:
        logger.info("retention worker disabled ([retention] interval = 0)")
        return None
    return RetentionWorker(retention, interval=interval, clock=retention.clock, tick=tick).start()
