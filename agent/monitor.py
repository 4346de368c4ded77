"""Counters and self-limits: per-source events/drops, pipeline totals, CPU and memory guard.

``Counters`` is updated by source threads and the pipeline (plain integer increments under the
GIL; readers take a snapshot). ``ResourceGuard`` samples the agent's own CPU and RSS every
``check_interval`` seconds: above ``max_cpu_percent`` it sets ``throttle`` (the pipeline then
pauses between batches, so live sources start dropping instead of the host starving); above
``max_rss_mb`` it calls the trim callback. Each transition is logged once at WARNING.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

__all__ = ["Counters", "ResourceGuard", "SourceCounters"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class SourceCounters:
    """Events accepted and dropped by one source."""

    events: int = 0
    drops: int = 0
    errors: int = 0
    lost: int = 0  # lost before reaching the agent (kernel / ETW buffer overflows)
    shed: int = 0  # optional events deliberately not queued while the pipeline was behind
    degraded: int = 0  # processed without enrichment/hashing/evidence (CPU pressure, backlog)
    incomplete: int = 0  # emitted with partial details (the process vanished mid-read)
    running: bool = False
    error: str = ""


@dataclass(slots=True)
class Counters:
    """Every counter the agent exposes through ``status``."""

    sources: dict[str, SourceCounters] = field(default_factory=dict)
    processed: int = 0
    detections: int = 0
    filtered: int = 0
    forwarded: int = 0
    own_events: int = 0
    sink_errors: int = 0
    pipeline_errors: int = 0
    unprocessable: int = 0  # events the pipeline failed on (forwarded raw when storable)
    started: float = field(default_factory=time.time)

    def source(self, name: str) -> SourceCounters:
        sc = self.sources.get(name)
        if sc is None:
            sc = self.sources[name] = SourceCounters()
        return sc

    def snapshot(self) -> dict[str, Any]:
        return {
            "sources": {
                n: {
                    "events": s.events,
                    "drops": s.drops,
                    "errors": s.errors,
                    "lost": s.lost,
                    "shed": s.shed,
                    "degraded": s.degraded,
                    "incomplete": s.incomplete,
                    "running": s.running,
                    "error": s.error,
                }
                for n, s in self.sources.items()
            },
            "processed": self.processed,
            "detections": self.detections,
            "filtered": self.filtered,
            "forwarded": self.forwarded,
            "own_events": self.own_events,
            "sink_errors": self.sink_errors,
            "pipeline_errors": self.pipeline_errors,
            "unprocessable": self.unprocessable,
            "started": self.started,
        }


class ResourceGuard:
    """Periodic CPU / RSS check of this process with throttle and trim hooks."""

    def __init__(
        self,
        *,
        max_cpu_percent: float,
        max_rss_mb: int,
        interval: float,
        trim: Callable[[], None],
        sample: Callable[[], tuple[float, int]] | None = None,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        self.max_cpu = max_cpu_percent
        self.max_rss = max_rss_mb * 1024 * 1024
        self.interval = interval
        self.trim = trim
        self._proc = psutil.Process()
        self._sample = sample or self._default_sample
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self.throttle = False
        self.over_memory = False
        self.cpu_percent = 0.0
        self.rss = 0
        self._thread: threading.Thread | None = None

    def _default_sample(self) -> tuple[float, int]:
        return self._proc.cpu_percent(None), self._proc.memory_info().rss

    def current_rss(self) -> int:
        """Resident memory now (status between two checks)."""
        try:
            return int(self._proc.memory_info().rss)
        except psutil.Error:
            return self.rss

    def check(self) -> None:
        """One sample; updates ``throttle`` / trims, logging state changes."""
        self.cpu_percent, self.rss = self._sample()
        over_cpu = self.cpu_percent > self.max_cpu
        if over_cpu != self.throttle:
            self.throttle = over_cpu
            if over_cpu:
                logger.warning(
                    "CPU self-limit exceeded: %.1f%% > %.1f%%; throttling the pipeline",
                    self.cpu_percent,
                    self.max_cpu,
                )
            else:
                logger.info("CPU back under the limit (%.1f%%)", self.cpu_percent)
        over_mem = self.rss > self.max_rss
        if over_mem:
            if not self.over_memory:
                logger.warning(
                    "memory self-limit exceeded: RSS %d MB > %d MB; trimming tracks and caches",
                    self.rss >> 20,
                    self.max_rss >> 20,
                )
            self.trim()
        elif self.over_memory:
            logger.info("memory back under the limit (RSS %d MB)", self.rss >> 20)
        self.over_memory = over_mem

    def start(self) -> None:
        self._proc.cpu_percent(None)
        self._thread = threading.Thread(target=self._loop, name="heron-guard", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._sleep(self.interval):
            try:
                self.check()
            except psutil.Error:
                logger.error("self check failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
