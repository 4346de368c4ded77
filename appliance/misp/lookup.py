"""Value lookup: sight values of types Heron does not pull (file names, registry keys, pipes).

WHIDS' MISP plugin asked MISP about every value it saw. Heron matches locally the types it pulls;
for the types it does not pull (by default `filename`, `regkey`, `named pipe`, which are noisy as
IoCs pushed to agents), this opt-in mode (`sighting_lookup`) asks MISP with an attribute
`restSearch` by value, under every pull filter. It is bounded on every side: candidates wait in a
bounded set, requests are at most `sighting_lookup_per_minute`, each carries at most
`LOOKUP_BATCH` values, and answers (hit or miss) are cached for `sighting_lookup_ttl` seconds.
Values found come back as `{normalised value: [MISP values]}` for the sighting queue.

Privacy: this sends candidate values seen on endpoints (not only IoC hits) to MISP; that is why
it is off by default.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .client import MispClient
from .errors import MispError
from .mapping import MISP_TYPES, normalise

__all__ = ["LOOKUP_BATCH", "MAX_PENDING", "ValueLookup"]

logger = logging.getLogger(__name__)

LOOKUP_BATCH = 100
MAX_PENDING = 5000
MAX_CACHE = 50_000
_HIVE_LONG = {
    "hklm": "hkey_local_machine",
    "hkcu": "hkey_current_user",
    "hku": "hkey_users",
    "hkcr": "hkey_classes_root",
    "hkcc": "hkey_current_config",
}


def spellings(heron_type: str, value: str) -> set[str]:
    """The ways MISP users write a value (MISP matches case-insensitively, not these forms)."""
    out = {value}
    if heron_type == "regkey":
        hive, _, rest = value.partition("\\")
        if hive in _HIVE_LONG:
            out.add(f"{_HIVE_LONG[hive]}\\{rest}")
    elif heron_type == "named-pipe":
        name = value.lstrip("\\")
        out |= {name, f"\\\\.\\pipe\\{name}"}
    return out


class ValueLookup:
    """Pending candidate values, a hit/miss cache and a per-minute request budget."""

    def __init__(self, client: MispClient, clock: Callable[[], float]) -> None:
        self.client = client
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], list[tuple[str, float]]] = {}
        self._cache: dict[tuple[str, str], tuple[float, list[str]]] = {}
        self._requests: list[float] = []
        self.requests_total = 0
        self.found_total = 0
        self.overflow_total = 0

    def heron_types(self) -> dict[str, list[str]]:
        """Heron type → the selected MISP lookup types that produce it (not pulled ones)."""
        s = self.client.settings
        out: dict[str, list[str]] = {}
        for mtype in s.sighting_lookup_types:
            if mtype in s.ioc_types:
                continue  # pulled: matched locally
            first = MISP_TYPES[mtype][0]
            if first:
                out.setdefault(first, []).append(mtype)
        return out

    def offer(
        self, source: str, when: float, candidates: Iterable[tuple[str, str]]
    ) -> dict[str, float]:
        """Cached hits as `{MISP value: when}`; unknown candidates wait for `run()`."""
        types = self.heron_types()
        now = self.clock()
        hits: dict[str, float] = {}
        with self._lock:
            for key in candidates:
                if key[0] not in types:
                    continue
                cached = self._cache.get(key)
                if cached is not None and cached[0] > now:
                    for misp_value in cached[1]:
                        hits[misp_value] = min(hits.get(misp_value, when), when)
                    continue
                waiting = self._pending.get(key)
                if waiting is None:
                    if len(self._pending) >= MAX_PENDING:
                        self.overflow_total += 1
                        continue
                    waiting = self._pending[key] = []
                if len(waiting) < 16:  # a few sources per value are enough
                    waiting.append((source, when))
        return hits

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def take(self, limit: int) -> list[list[Any]]:
        """Remove up to `limit` pending values: `[[type, value, [[source, when], ...]], ...]`
        (cluster mode: a front-end that does not lead hands them to the leader, sightings.py)."""
        with self._lock:
            keys = list(self._pending)[:limit]
            return [[t, v, [list(w) for w in self._pending.pop((t, v))]] for t, v in keys]

    def give(self, entries: Iterable[list[Any]]) -> dict[str, dict[str, float]]:
        """Offer values `take` removed (on another front-end); cached hits as `{source: {MISP
        value: when}}`, the others wait for `run()`."""
        hits: dict[str, dict[str, float]] = {}
        for heron_type, value, seen in entries:
            for source, when in seen:
                key = (str(heron_type), str(value))
                found = self.offer(str(source), float(when), [key])
                per = hits.setdefault(str(source), {})
                for v, t in found.items():
                    per[v] = min(per.get(v, t), t)
        return hits

    def run(self) -> dict[str, dict[str, float]]:
        """Look up pending values within the budget; returns `{source: {MISP value: when}}`.

        Raises MispError when MISP fails; the values stay pending.
        """
        s = self.client.settings
        types = self.heron_types()
        found: dict[str, dict[str, float]] = {}
        while True:
            now = self.clock()
            with self._lock:
                self._requests = [t for t in self._requests if t > now - 60]
                if len(self._requests) >= s.sighting_lookup_per_minute or not self._pending:
                    return found
                batch = list(self._pending)[:LOOKUP_BATCH]
                self._requests.append(now)
            answers = self._ask(batch, types)
            with self._lock:
                for key in batch:
                    misp_values = answers.get(key, [])
                    if len(self._cache) >= MAX_CACHE:
                        self._cache.clear()
                    self._cache[key] = (now + s.sighting_lookup_ttl, misp_values)
                    for source, when in self._pending.pop(key, []):
                        per = found.setdefault(source, {})
                        for v in misp_values:
                            per[v] = min(per.get(v, when), when)
                            self.found_total += 1

    def _ask(
        self, batch: list[tuple[str, str]], types: dict[str, list[str]]
    ) -> dict[tuple[str, str], list[str]]:
        s = self.client.settings
        values = sorted({v for t, value in batch for v in spellings(t, value)})
        params: dict[str, Any] = dict(
            controller="attributes",
            return_format="json",
            value=values,
            type_attribute=sorted({m for t, _ in batch for m in types[t]}),
            to_ids=1,
            category=list(s.categories) or None,
            tags=list(s.tags) or None,
            published=True if s.published_only else None,
            enforce_warninglist=s.enforce_warninglist,
            limit=len(values) * 10,
            page=1,
        )
        self.requests_total += 1
        try:
            reply = self.client.call(
                "attributes/restSearch (value lookup)", lambda api: api.search(**params)
            )
        except MispError:
            with self._lock:
                self._requests.pop()  # not an answer: keep the budget for the retry
            raise
        rows = reply.get("Attribute", []) if isinstance(reply, dict) else []
        wanted = set(batch)
        out: dict[tuple[str, str], list[str]] = {}
        for row in rows if isinstance(rows, list) else []:
            mtype, raw = str(row.get("type", "")), str(row.get("value", ""))
            halves = MISP_TYPES.get(mtype, ())
            first = halves[0] if halves else None
            misp_value = raw.split("|", 1)[0] if "|" in mtype else raw
            norm = normalise(first, misp_value) if first else None
            if first and norm and (first, norm) in wanted:
                out.setdefault((first, norm), []).append(misp_value)
        return out
