"""Endpoint scoring, like Gene's reducer that WHIDS runs over detections (docs/reference/whids.md
§2.9).

Per endpoint: alert counts by signature, ATT&CK techniques/tactics, sums and deviations of alert
and signature criticality (criticality capped at 10, rules with criticality 0 ignored), signature
diversity, and a score. The score is

    score = avg-signature-criticality * count-uniq-signatures
          + avg-alert-criticality * log2(1 + alert-count)

and `bounded-score` scales it to 0–100 relative to the highest-scoring endpoint. State is kept in
memory and persisted through the store (table `reports`) after every batch with detections.

Cluster mode (`SharedReducer`): an endpoint's detections reach several front-ends, so the
`reports` row in PostgreSQL is the state. A batch's detections are merged into it in one
transaction (counts add, maxima and unions merge), and every front-end re-reads its copy
after a `NOTIFY heron_fleet, 'reports'`, so scores, reports and resets agree everywhere.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
from typing import Any

from ..core.errors import StoreError
from ..core.timefmt import rfc3339
from ..store import ChangeFeed
from ..store.reports import Reports

__all__ = ["KEEP", "Reducer", "SharedReducer"]

logger = logging.getLogger(__name__)

KEEP = 1000  # recent alerts kept per endpoint for averages, deviations and the median time


class _Entry:
    __slots__ = (
        "alerts",
        "by_sig",
        "sig_crit",
        "alert_crits",
        "techniques",
        "tactics",
        "start",
        "stop",
        "times",
    )

    def __init__(self) -> None:
        self.alerts = 0
        self.by_sig: dict[str, int] = {}
        self.sig_crit: dict[str, int] = {}
        self.alert_crits: list[int] = []
        self.techniques: set[str] = set()
        self.tactics: set[str] = set()
        self.start: float | None = None
        self.stop: float | None = None
        self.times: list[float] = []

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> _Entry:
        entry = cls()
        entry.alerts = int(st.get("alerts", 0))
        entry.by_sig = dict(st.get("by_sig", {}))
        entry.sig_crit = dict(st.get("sig_crit", {}))
        entry.alert_crits = list(st.get("alert_crits", []))
        entry.techniques = set(st.get("techniques", []))
        entry.tactics = set(st.get("tactics", []))
        entry.start, entry.stop = st.get("start"), st.get("stop")
        entry.times = list(st.get("times", []))
        return entry

    def state(self) -> dict[str, Any]:
        return {
            "alerts": self.alerts,
            "by_sig": self.by_sig,
            "sig_crit": self.sig_crit,
            "alert_crits": self.alert_crits[-KEEP:],
            "techniques": sorted(self.techniques),
            "tactics": sorted(self.tactics),
            "start": self.start,
            "stop": self.stop,
            "times": self.times[-KEEP:],
        }

    def add(
        self, ts: float, signatures: list[str], crit: int, attack: list[dict[str, Any]] | None
    ) -> None:
        """One detection (``crit`` already capped to 0–10)."""
        self.alerts += 1
        if crit:
            self.alert_crits.append(crit)
        for sig in signatures:
            self.by_sig[sig] = self.by_sig.get(sig, 0) + 1
            if crit:
                self.sig_crit[sig] = max(self.sig_crit.get(sig, 0), crit)
        for item in attack or []:
            if item.get("ID"):
                self.techniques.add(str(item["ID"]))
            if item.get("Tactic"):
                self.tactics.add(str(item["Tactic"]))
        self._span(ts, ts)
        self.times.append(ts)
        self._trim()

    def merge(self, other: _Entry) -> None:
        """Fold another entry's detections in (what ``add`` of each of them would give)."""
        self.alerts += other.alerts
        self.alert_crits.extend(other.alert_crits)
        for sig, n in other.by_sig.items():
            self.by_sig[sig] = self.by_sig.get(sig, 0) + n
        for sig, crit in other.sig_crit.items():
            self.sig_crit[sig] = max(self.sig_crit.get(sig, 0), crit)
        self.techniques |= other.techniques
        self.tactics |= other.tactics
        if other.start is not None and other.stop is not None:
            self._span(other.start, other.stop)
        self.times.extend(other.times)
        self._trim()

    def _span(self, start: float, stop: float) -> None:
        self.start = start if self.start is None else min(self.start, start)
        self.stop = stop if self.stop is None else max(self.stop, stop)

    def _trim(self) -> None:
        # averages and the median use the most recent KEEP alerts.
        if len(self.times) > 2 * KEEP:
            del self.times[:-KEEP]
        if len(self.alert_crits) > 2 * KEEP:
            del self.alert_crits[:-KEEP]

    def score(self) -> float:
        if not self.alerts:
            return 0.0
        sig = list(self.sig_crit.values())
        avg_sig = statistics.fmean(sig) if sig else 0.0
        avg_alert = statistics.fmean(self.alert_crits) if self.alert_crits else 0.0
        return avg_sig * len(self.by_sig) + avg_alert * math.log2(1 + self.alerts)


class Reducer:
    """Thread-safe per-endpoint detection statistics."""

    def __init__(self, state: dict[str, dict[str, Any]] | None = None) -> None:
        self._lock = threading.Lock()
        self._entries = {k: _Entry.from_state(v) for k, v in (state or {}).items()}

    def update(
        self,
        uuid: str,
        ts: float,
        signatures: list[str],
        criticality: int,
        attack: list[dict[str, Any]] | None = None,
    ) -> None:
        crit = max(0, min(10, int(criticality)))
        with self._lock:
            self._entries.setdefault(uuid, _Entry()).add(ts, signatures, crit, attack)

    def commit(self, uuid: str, reports: Reports, now: float) -> None:
        """Persist one endpoint's state after a batch's ``update`` calls."""
        reports.save_many(self.states({uuid}), now)

    def states(self, uuids: set[str] | None = None) -> dict[str, dict[str, Any]]:
        self._refresh()
        with self._lock:
            return {k: e.state() for k, e in self._entries.items() if uuids is None or k in uuids}

    def reset(self, uuid: str) -> dict[str, Any] | None:
        """Drop one endpoint's entry; returns its report (for the archive) or None."""
        report = self.report(uuid)
        with self._lock:
            self._entries.pop(uuid, None)
        return report

    def _refresh(self) -> None:
        """Embedded: memory is the state. (``SharedReducer`` re-reads after a change.)"""

    def _max_score(self) -> float:
        return max((e.score() for e in self._entries.values()), default=0.0)

    def bounded(self, uuid: str) -> float:
        self._refresh()
        with self._lock:
            entry = self._entries.get(uuid)
            top = self._max_score()
            if entry is None or not top:
                return 0.0
            return round(100.0 * entry.score() / top, 2)

    def report(self, uuid: str) -> dict[str, Any] | None:
        """WHIDS `ReducedStats` for one endpoint."""
        self._refresh()
        with self._lock:
            entry = self._entries.get(uuid)
            if entry is None:
                return None
            top = self._max_score()
            return _reduced(uuid, entry, top)

    def reports(self) -> dict[str, dict[str, Any]]:
        self._refresh()
        with self._lock:
            top = self._max_score()
            return {k: _reduced(k, e, top) for k, e in self._entries.items()}


class SharedReducer(Reducer):
    """Cluster mode: the ``reports`` rows in PostgreSQL are the state (see the module doc).

    ``update`` collects a batch's detections per endpoint; ``commit`` merges them into the row
    in one transaction (re-run on conflicts with other front-ends) and keeps the merged state.
    Reads use a copy of every row, re-read after each ``reports`` change announcement (any
    front-end's merge or reset). A failed merge keeps the detections for the next commit.
    """

    def __init__(self, reports: Reports, changes: ChangeFeed) -> None:
        super().__init__(reports.load_all())
        self._reports = reports
        self._pending: dict[str, _Entry] = {}
        self._generation = 0  # bumped by each announcement; the copy is of ``_loaded``
        self._loaded = 0
        changes.subscribe("reports", self._changed)

    def _changed(self) -> None:
        self._generation += 1

    def _refresh(self) -> None:
        generation = self._generation
        if generation == self._loaded:
            return
        state = self._reports.load_all()
        with self._lock:
            self._entries = {k: _Entry.from_state(v) for k, v in state.items()}
            self._loaded = generation

    def update(
        self,
        uuid: str,
        ts: float,
        signatures: list[str],
        criticality: int,
        attack: list[dict[str, Any]] | None = None,
    ) -> None:
        crit = max(0, min(10, int(criticality)))
        with self._lock:
            self._pending.setdefault(uuid, _Entry()).add(ts, signatures, crit, attack)

    def commit(self, uuid: str, reports: Reports, now: float) -> None:
        with self._lock:
            delta = self._pending.pop(uuid, None)
        if delta is None:
            return

        def merge(state: dict[str, Any] | None) -> dict[str, Any]:
            entry = _Entry.from_state(state or {})
            entry.merge(delta)
            return entry.state()

        try:
            merged = self._reports.merge(uuid, merge, now)
        except StoreError as ex:  # PostgreSQL unreachable: merged by the next commit
            logger.warning("endpoint score not stored yet (%s): %s", uuid, ex)
            with self._lock:
                kept = self._pending.setdefault(uuid, _Entry())
                kept.merge(delta)
            return
        with self._lock:
            self._entries[uuid] = _Entry.from_state(merged)

    def reset(self, uuid: str) -> dict[str, Any] | None:
        state = self._reports.take(uuid)
        self._refresh()
        with self._lock:
            self._entries.pop(uuid, None)
            if state is None:
                return None
            entry = _Entry.from_state(state)
            top = max(self._max_score(), entry.score())
            return _reduced(uuid, entry, top)


def _std(values: list[int]) -> float:
    return statistics.pstdev(values) if len(values) > 1 else 0.0


def _reduced(uuid: str, e: _Entry, top: float) -> dict[str, Any]:
    sig = list(e.sig_crit.values())
    score = e.score()
    times = sorted(e.times)
    return {
        "identifier": uuid,
        "alert-count": e.alerts,
        "count-by-signature": dict(e.by_sig),
        "signatures": sorted(e.by_sig),
        "techniques": sorted(e.techniques),
        "tactics": sorted(e.tactics),
        "signature-count": sum(e.by_sig.values()),
        "sum-alert-criticality": sum(e.alert_crits),
        "avg-alert-criticality": statistics.fmean(e.alert_crits) if e.alert_crits else 0.0,
        "std-dev-alert-criticality": _std(e.alert_crits),
        "sum-rule-criticality": sum(sig),
        "avg-signature-criticality": statistics.fmean(sig) if sig else 0.0,
        "std-dev-signature-criticality": _std(sig),
        "signature-diversity": (len(e.by_sig) / e.alerts) if e.alerts else 0.0,
        "count-uniq-signatures": len(e.by_sig),
        "signature-criticality-metric": (statistics.fmean(sig) if sig else 0.0) * len(e.by_sig),
        "alert-criticality-metric": (statistics.fmean(e.alert_crits) if e.alert_crits else 0.0)
        * math.log2(1 + e.alerts),
        "score": score,
        "bounded-score": round(100.0 * score / top, 2) if top else 0.0,
        "start-time": rfc3339(e.start),
        "median-time": rfc3339(times[len(times) // 2]) if times else None,
        "stop-time": rfc3339(e.stop),
    }
