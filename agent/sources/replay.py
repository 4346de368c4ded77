"""Replay source: event files at recorded, accelerated or fixed pace.

Files are read by ``rules.inputs`` (the readers of ``heron scan``): EVTX in Gene's rendering,
WHIDS/Gene JSON (also wrapped under ``"event"``, the gene-oracle corpus format), Winlogbeat,
flattened JSON, Windows XML, Sysmon for Linux, CSV and audit.log, plain or in ``.gz``/``.zip``/
``.tar`` archives, so replay and ``heron scan`` see identical events.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["ReplaySource", "event_epoch", "iter_file"]

logger = logging.getLogger(__name__)

_TIME_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?$"
)


def event_epoch(event: dict[str, Any]) -> float | None:
    """Seconds since the epoch of ``System.TimeCreated.SystemTime``; ``None`` if absent/invalid."""
    try:
        raw = event["Event"]["System"]["TimeCreated"]["SystemTime"]
    except (KeyError, TypeError):
        return None
    if not isinstance(raw, str):
        return None
    m = _TIME_RE.match(raw.strip())
    if not m:
        return None
    date, clock, frac, tz = m.groups()
    tz = "+00:00" if tz in (None, "Z") else tz
    base = datetime.fromisoformat(f"{date}T{clock}{tz}").astimezone(UTC).timestamp()
    return base + (float("0." + frac) if frac else 0.0)


def iter_file(path: str | Path, input_format: str = "auto") -> Iterator[dict[str, Any]]:
    """Windows-shaped events (``{"Event": …}``) of one replay file, any ``rules.inputs`` format.

    Events in another shape (unrecognised, kunai) cannot enter the agent pipeline: they are
    counted and logged at the end of the file with the parse errors, never dropped silently.
    """
    from rules.inputs import InputStats, read_path

    stats = InputStats()
    others = 0
    for event in read_path(path, input_format, stats):
        if isinstance(event, dict) and isinstance(event.get("Event"), dict):
            yield event
        else:
            others += 1
    if others or stats.unrecognised or stats.parse_errors:
        logger.warning(
            "replay: %s: %d events in no known shape, %d of them not replayed (not "
            '{"Event": …}), %d parse errors%s',
            path,
            stats.unrecognised,
            others,
            stats.parse_errors,
            f" (first: {stats.errors[0]})" if stats.errors else "",
        )


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    from rules.inputs import wanted

    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and wanted(q.name)))
        else:
            out.append(p)
    return out


class ReplaySource:
    """Replays files; lossless by default (the pipeline queue throttles it, nothing dropped)."""

    name = "replay"
    live = False

    def __init__(
        self,
        paths: Iterable[str | Path],
        *,
        speed: float = 0.0,
        rate: float = 0.0,
        loop: bool = False,
        lossless: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.paths = _expand(paths)
        self.speed = speed
        self.rate = rate
        self.loop = loop
        self.lossless = lossless
        self._clock = clock
        self._closed = threading.Event()
        self._sleep = sleep or (lambda s: self._closed.wait(s) and None)
        self.replayed = 0
        self.min_sleep = 0.0 if sleep is not None else 0.05

    def _pace(self, start: float, offset: float) -> None:
        delay = start + offset - self._clock()
        if delay > self.min_sleep:  # Performance: sleep in ≥ 50 ms steps, not once per event
            self._sleep(delay)

    def events(self) -> Iterator[dict[str, Any]]:
        start = self._clock()
        first_ts: float | None = None
        n = 0
        while True:
            for path in self.paths:
                for event in iter_file(path):
                    if self._closed.is_set():
                        return
                    if self.rate > 0:
                        self._pace(start, n / self.rate)
                    elif self.speed > 0:
                        ts = event_epoch(event)
                        if ts is not None:
                            if first_ts is None:
                                first_ts = ts
                            self._pace(start, max(0.0, ts - first_ts) / self.speed)
                    n += 1
                    self.replayed = n
                    yield event
            if not self.loop or not self.paths:
                return
            first_ts = None
            if self.rate <= 0:  # fixed rate: offsets n / rate keep growing across loops
                start = self._clock()

    def close(self) -> None:
        self._closed.set()
