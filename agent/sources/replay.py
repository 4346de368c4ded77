"""Replay source: EVTX and JSON Lines files at recorded, accelerated or fixed pace.

EVTX files go through ``rules.evtx.read_evtx`` (Gene's rendering, so replay and ``heron scan`` see
identical events). JSON Lines files hold one event per line, either the event itself
(``{"Event": …}``) or a wrapper carrying it under ``"event"`` (the gene-oracle corpus format);
``.gz`` files are decompressed on the fly.
"""

from __future__ import annotations

import gzip
import logging
import re
import threading
import time
import typing
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

__all__ = ["ReplaySource", "event_epoch", "iter_file"]

logger = logging.getLogger(__name__)

_TIME_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?$")


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


def _open_bytes(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return typing.cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with _open_bytes(path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                logger.warning("replay: %s:%d is not JSON, skipped", path, lineno)
                continue
            if isinstance(obj, dict) and "Event" not in obj and isinstance(obj.get("event"), dict):
                obj = obj["event"]
            if isinstance(obj, dict) and isinstance(obj.get("Event"), dict):
                yield obj


def _iter_evtx(path: Path) -> Iterator[dict[str, Any]]:
    from rules.evtx import read_evtx

    yield from read_evtx(path)


def iter_file(path: str | Path) -> Iterator[dict[str, Any]]:
    """Events of one replay file, by extension (``.evtx`` or JSON Lines)."""
    p = Path(path)
    if p.suffix.lower() == ".evtx":
        return _iter_evtx(p)
    return _iter_jsonl(p)


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file()
                              and (q.suffix.lower() in (".evtx", ".jsonl", ".json")
                                   or q.name.endswith(".jsonl.gz"))))
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
        if delay > self.min_sleep:  # PERF(agent): sleep in ≥ 50 ms steps, not once per event
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
