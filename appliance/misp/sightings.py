"""Sightings: IoC values seen on endpoints, matched locally, queued durably, pushed in batches.

docs/reference/misp.md §3.2: only values that hit a pulled MISP IoC are sent (never raw telemetry).
Each hit is
de-duplicated per `(source, value)` within a TTL (persisted, so a restart does not re-send), queued
on disk, and after `sighting_batch_delay` sent as one `POST /sightings/add` per source: `{"values":
[…], "source": "<endpoint uuid>|<hostname>", "type": "0", "timestamp": <earliest hit>, "filters":
{"to_ids": 1}}`. MISP down or slow: the batch stays queued. 5xx: retried up to
`sighting_max_attempts` times. "No valid attributes" (HTTP 200) and 4xx: dropped and counted.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .client import MispClient
from .deadletters import DeadLetters
from .errors import MispError, MispRejected, MispServerError, MispUnavailable
from .iocs import IocIndex
from .lookup import ValueLookup
from .mapping import event_values
from .state import ItemQueue, StateStore

__all__ = ["FlushResult", "SightingPusher", "sighting_source"]

logger = logging.getLogger(__name__)

SEEN_STATE = "sightings-seen"
ATTEMPTS_STATE = "sightings-attempts"
MAX_VALUES_PER_REQUEST = 500
NO_MATCH = "No valid attributes found"


def sighting_source(endpoint_uuid: str, hostname: str) -> str:
    """`<endpoint uuid>|<hostname>`, within MISP's varchar(255)."""
    return f"{endpoint_uuid}|{hostname}"[:255]


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What one flush did."""

    requests: int = 0
    sent_values: int = 0
    unmatched_values: int = 0
    dropped_values: int = 0
    pending_batches: int = 0


def _event_time(event: Mapping[str, Any], default: float) -> float:
    root = event.get("Event", event)
    system = root.get("System") if isinstance(root, Mapping) else None
    created = system.get("TimeCreated") if isinstance(system, Mapping) else None
    text = created.get("SystemTime") if isinstance(created, Mapping) else None
    if not isinstance(text, str):
        return default
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return default
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


HANDOVER_BATCH = 500  # lookup values per handed-over item
HANDOVER_ITEMS = 20  # items in the shared hand-over queue (10,000 values), then values wait


class SightingPusher:
    """Turns events into queued sighting batches and flushes them to MISP."""

    def __init__(
        self,
        client: MispClient,
        state: StateStore,
        queue: ItemQueue,
        clock: Callable[[], float],
        dead: DeadLetters | None = None,
        lookups: ItemQueue | None = None,
    ) -> None:
        self.dead = dead
        self.lookups = lookups  # shared storage: lookup values handed to the leader
        self.client = client
        self.state = state
        self.queue = queue
        self.clock = clock
        self._lock = threading.Lock()
        seen = state.load(SEEN_STATE) or {}
        self._seen: dict[str, float] = {k: float(v) for k, v in seen.items()}
        self._attempts: dict[str, int] = {}
        self.reload()
        self.lookup = ValueLookup(client, clock)
        self.sent_total = 0
        self.dropped_total = 0
        self.unmatched_total = 0
        self.hits_total = 0

    def reload(self) -> None:
        """Read the attempts again (cluster mode: another front-end led the flush until now)."""
        self._attempts = self.state.load(ATTEMPTS_STATE) or {}

    def observe(
        self,
        endpoint_uuid: str,
        hostname: str,
        events: Iterable[Mapping[str, Any]],
        index: IocIndex,
    ) -> int:
        """Queue the IoC values these events carry.

        Returns how many new values were queued. With `sighting_lookup`, values of the lookup
        types are offered to the value lookup (cached answers count at once).
        """
        lookup = self.client.settings.sighting_lookup
        if not len(index) and not lookup:
            return 0
        source = sighting_source(endpoint_uuid, hostname)
        now = self.clock()
        found: dict[str, float] = {}
        for event in events:
            when: float | None = None
            for misp_value in index.match(event) if len(index) else ():
                when = _event_time(event, now) if when is None else when
                found[misp_value] = min(found.get(misp_value, when), when)
            if lookup:
                when = _event_time(event, now) if when is None else when
                for v, t in self.lookup.offer(source, when, set(event_values(event))).items():
                    found[v] = min(found.get(v, t), t)
        return self._queue(source, found)

    def _queue(self, source: str, found: Mapping[str, float]) -> int:
        """Queue one batch of `{MISP value: first seen}` not sighted within the TTL."""
        now = self.clock()
        ttl = self.client.settings.sighting_ttl
        fresh: dict[str, float] = {}
        with self._lock:
            for misp_value in sorted(found):
                key = f"{source}\n{misp_value.lower()}"
                if self._seen.get(key, 0.0) > now:
                    continue
                fresh[misp_value] = found[misp_value]
                self._seen[key] = now + ttl
            if not fresh:
                return 0
            self.hits_total += len(fresh)
            self._seen = {k: v for k, v in self._seen.items() if v > now}
            self.state.save(SEEN_STATE, self._seen)
            self._enforce_bound()
            self.queue.put(
                {
                    "source": source,
                    "values": sorted(fresh),
                    "timestamp": int(min(fresh.values())),
                    "queued": now,
                }
            )
        return len(fresh)

    def false_positive(self, source: str, values: Iterable[str]) -> list[str]:
        """Queue a type-1 (false positive) sighting of these MISP values: an analyst's verdict.

        Not de-duplicated by the TTL (an explicit action); MISP lowers the decay score with it.
        """
        wanted = sorted(set(values))
        if wanted:
            with self._lock:
                self._enforce_bound()
                self.queue.put(
                    {
                        "source": source,
                        "values": wanted,
                        "timestamp": int(self.clock()),
                        "queued": self.clock(),
                        "type": "1",
                    }
                )
        return wanted

    def run_lookup(self) -> int:
        """Ask MISP about pending lookup values (bounded); queue what it has. Raises MispError."""
        if not self.client.settings.sighting_lookup:
            return 0
        queued = self._take_over()
        if not self.lookup.pending():
            return queued
        return queued + sum(self._queue(s, found) for s, found in self.lookup.run().items())

    def lookup_pending(self) -> int:
        """Values waiting for the value lookup here, plus batches other front-ends handed over."""
        return self.lookup.pending() + (len(self.lookups) if self.lookups is not None else 0)

    def hand_over(self) -> int:
        """Cluster mode, on a front-end that does not lead: move pending lookup values to the
        shared queue, which the leader reads (`_take_over`). Bounded: while the queue holds
        `HANDOVER_ITEMS` items, values wait here (under the lookup's own bound)."""
        if self.lookups is None or not self.lookup.pending():
            return 0
        moved = 0
        while len(self.lookups) < HANDOVER_ITEMS:
            entries = self.lookup.take(HANDOVER_BATCH)
            if not entries:
                break
            try:
                self.lookups.put({"values": entries, "queued": self.clock()})
            except Exception:
                self.lookup.give(entries)  # PostgreSQL failed: they wait here again
                raise
            moved += len(entries)
        return moved

    def _take_over(self) -> int:
        """On the leader: offer the values other front-ends handed over to this lookup (cached
        answers are queued at once). An item leaves the queue once its values are pending here."""
        if self.lookups is None:
            return 0
        queued = 0
        for item_id, item in list(self.lookups.items()):
            hits = self.lookup.give(item.get("values", []))
            queued += sum(self._queue(source, found) for source, found in hits.items() if found)
            self.lookups.remove(item_id)
        return queued

    def _enforce_bound(self) -> None:
        limit = self.client.settings.sighting_queue_max
        excess = len(self.queue) - limit + 1
        if excess <= 0:
            return
        for item_id, item in list(self.queue.items())[:excess]:
            self.queue.remove(item_id)
            self.dropped_total += len(item.get("values", []))
        logger.warning(
            "MISP sighting queue full (%d batches): dropped the oldest %d", limit, excess
        )

    def due(self) -> bool:
        """Whether the oldest pending batch has waited `sighting_batch_delay`."""
        for _, item in self.queue.items():
            return self.clock() - float(item.get("queued", 0)) >= (
                self.client.settings.sighting_batch_delay
            )
        return False

    def flush(self) -> FlushResult:
        """Send pending batches, one request per source.

        Raises MispUnavailable when MISP is down.
        """
        try:
            self.run_lookup()
        except MispUnavailable:
            raise
        except MispError as ex:
            logger.warning("MISP value lookup failed: %s", ex)
        groups: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
        for item_id, item in self.queue.items():
            key = (item["source"], str(item.get("type", "0")))
            groups.setdefault(key, []).append((item_id, item))
        requests = sent = unmatched = dropped = 0
        max_attempts = self.client.settings.sighting_max_attempts
        for (source, stype), items in groups.items():
            for chunk in _chunks(items):
                values = sorted({v for _, item in chunk for v in item["values"]})
                body = {
                    "values": values,
                    "source": source,
                    "type": stype,
                    "timestamp": min(int(item["timestamp"]) for _, item in chunk),
                    "filters": self._filters(),
                }
                ids = [item_id for item_id, _ in chunk]
                try:
                    requests += 1
                    reply = self.client.call("sightings/add", _add_sighting(body))
                except MispServerError as ex:
                    if self._bump(ids) >= max_attempts:
                        dropped += self._drop(chunk, len(values), f"{ex}, attempts exhausted")
                    if not self.client.ready():
                        raise  # several 5xx in a row: MISP is failing, the client backs off
                    continue
                except MispUnavailable:
                    raise
                except MispRejected as ex:
                    dropped += self._drop(chunk, len(values), str(ex))
                    continue
                message = str(reply.get("message", "")) if isinstance(reply, dict) else ""
                if isinstance(reply, dict) and "Sighting" in reply:
                    sent += len(values)
                elif NO_MATCH in message:
                    unmatched += len(values)
                    logger.info(
                        "MISP matched none of %d sighted values from %s", len(values), source
                    )
                else:
                    # SightingsController::add answers its failures with HTTP 200 and a message.
                    dropped += self._drop(chunk, len(values), message or f"unexpected {reply!r}")
                    continue
                self._done(ids)
        with self._lock:
            self.sent_total += sent
            self.unmatched_total += unmatched
        return FlushResult(
            requests=requests,
            sent_values=sent,
            unmatched_values=unmatched,
            dropped_values=dropped,
            pending_batches=len(self.queue),
        )

    def _bump(self, ids: list[str]) -> int:
        worst = 0
        for item_id in ids:
            self._attempts[item_id] = self._attempts.get(item_id, 0) + 1
            worst = max(worst, self._attempts[item_id])
        self.state.save(ATTEMPTS_STATE, self._attempts)
        return worst

    def _done(self, ids: list[str]) -> None:
        for item_id in ids:
            self.queue.remove(item_id)
            self._attempts.pop(item_id, None)
        self.state.save(ATTEMPTS_STATE, self._attempts)

    def _drop(self, chunk: list[tuple[str, dict[str, Any]]], count: int, why: str) -> int:
        """Move the batches to the dead-letter list (or drop them when there is none)."""
        ids = [item_id for item_id, _ in chunk]
        if self.dead is not None:
            for item_id, item in chunk:
                self.dead.add("sightings", item, why, self._attempts.get(item_id, 0) + 1)
        else:
            logger.warning("dropping %d MISP sighting values: %s", count, why)
        self._done(ids)
        with self._lock:
            self.dropped_total += count
        return count

    def _filters(self) -> dict[str, Any]:
        """Every filter of the pull, so a sighting lands only on attributes Heron pulled.

        With `filters`, /sightings/add runs an attribute restSearch with them
        (docs/reference/misp.md §3.1).
        """
        s = self.client.settings
        types = list(s.ioc_types)
        if s.sighting_lookup:
            types += [t for t in s.sighting_lookup_types if t not in types]
        filters: dict[str, Any] = {"to_ids": 1, "type": types}
        if s.categories:
            filters["category"] = list(s.categories)
        if s.tags:
            filters["tags"] = list(s.tags)
        if s.orgs:
            filters["org"] = list(s.orgs)
        if s.threat_levels:
            filters["threat_level_id"] = list(s.threat_levels)
        if s.exclude_decayed:
            filters["excludeDecayed"] = 1
        if s.published_only:
            filters["published"] = 1
        if s.enforce_warninglist:
            filters["enforceWarninglist"] = 1
        return filters


def _add_sighting(body: dict[str, Any]) -> Callable[[Any], Any]:
    def call(api: Any) -> Any:
        return api.add_sighting(body)

    return call


def _chunks(items: list[tuple[str, dict[str, Any]]]) -> Iterable[list[tuple[str, dict[str, Any]]]]:
    """Groups of queue items whose values fit one request."""
    chunk: list[tuple[str, dict[str, Any]]] = []
    size = 0
    for entry in items:
        n = len(entry[1]["values"])
        if chunk and size + n > MAX_VALUES_PER_REQUEST:
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += n
    if chunk:
        yield chunk
