"""Process metrics rendered in the Prometheus text format at GET /metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Metrics"]


class Metrics:
    """Counters (monotonic) and gauges (callables read at scrape time)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.started = clock()
        self._lock = threading.Lock()
        self._counters: dict[str, float] = {}
        self._help: dict[str, tuple[str, str]] = {}
        self._gauges: dict[str, Callable[[], float]] = {}
        self._rate_window: list[tuple[float, int]] = []

    def counter(self, name: str, help: str) -> None:
        self._help[name] = ("counter", help)
        self._counters.setdefault(name, 0.0)

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        self._help[name] = ("gauge", help)
        self._gauges[name] = read

    def inc(self, name: str, value: float = 1.0) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0.0) + value

    def events_received(self, count: int) -> None:
        """Count events and remember them for the events/s gauge (last 60 s)."""
        now = self.clock()
        with self._lock:
            self._counters["heron_events_received_total"] = (
                self._counters.get("heron_events_received_total", 0.0) + count
            )
            self._rate_window.append((now, count))
            cut = now - 60.0
            while self._rate_window and self._rate_window[0][0] < cut:
                self._rate_window.pop(0)

    def events_per_second(self) -> float:
        now = self.clock()
        with self._lock:
            recent = [c for t, c in self._rate_window if t >= now - 60.0]
        span = min(60.0, max(1.0, now - self.started))
        return sum(recent) / span

    def value(self, name: str) -> float:
        if name in self._gauges:
            return float(self._gauges[name]())
        return self._counters.get(name, 0.0)

    def render(self) -> str:
        lines = []
        for name, (kind, help) in sorted(self._help.items()):
            lines.append(f"# HELP {name} {help}")
            lines.append(f"# TYPE {name} {kind}")
            try:
                value = self.value(name)
            except Exception:  # noqa: BLE001 - a broken gauge must not break the scrape
                value = float("nan")
            lines.append(f"{name} {value:g}" if value == value else f"{name} NaN")
        return "\n".join(lines) + "\n"
