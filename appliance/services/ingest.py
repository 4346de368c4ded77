"""The /logs ingest path: decode a batch, make it durable, then fan it out.

Order for one batch (an HTTP 200 is sent only after step 2 returns):
1. bounded read + gzip decompression + NDJSON decoding (services/bodies.py), `EdrData` set;
2. `events.append(...)` — durable on return, idempotent on (endpoint uuid, batch id);
3. unless the batch was a duplicate: detections → store + reducer, SSE hub, event listeners
   (plugins such as the MISP sync), endpoint presence.

Event listeners (`Ingest.listeners`) are called as `listener(endpoint, events)` with the store's
`Endpoint` and the list of enriched event dicts, on a dispatcher thread: a slow listener never
blocks ingest, and when its queue (1,000 batches) is full the batch is dropped with a WARNING.
A listener (or, for a bound method, its object) may define `wants_events() -> bool`; batches are
skipped while every listener answers False.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import queue
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from index import EndpointRef
from rules import wire
from rules.event import event_hash, event_time

from ..core.config import LimitsConfig
from ..core.errors import PayloadTooLarge, ValidationError
from ..core.metrics import Metrics
from ..core.timefmt import rfc3339
from ..store import Endpoint, Store
from ..store.events import EventSink
from ..store.reports import DetectionRow
from .bodies import count_lines, decompress, split_ndjson
from .budget import MemoryBudget, estimate_batch
from .cut import cut_event, long_lines
from .diskguard import DiskGuard
from .index_errors import index_errors
from .rulestate import RuleStates
from .scoring import Reducer
from .streams import StreamHub
from .suppressing import ActiveSuppressions

__all__ = ["EventListener", "Ingest", "ListenerDispatcher", "endpoint_ref", "tune_gc"]

logger = logging.getLogger(__name__)
EventListener = Callable[[Endpoint, list[dict[str, Any]]], None]
_Item = tuple[Endpoint, list[dict[str, Any]], Callable[[], None] | None]
PRESENCE_FLUSH = 2.0
AGENT_CHANNEL = "Heron-Agent"  # the agents' own health events (docs/link.md)
AGENT_COUNTERS = 9010  # EventID: loss/degradation/budget counters (latest kept per endpoint)
COUNTERS_KIND = "agent-counters"  # fleet-store document kind (key: endpoint uuid)
MAX_COUNTERS = 256 * 1024
# Performance: a /logs batch is a tree of ~30,000 acyclic objects that stays alive while it is
# journaled and queued for indexing (up to 32 batches). With CPython's default thresholds
# (700, 10, 10) the cyclic GC kept promoting and rescanning them: py-spy --gil showed it
# inflating NDJSON decoding 2.5× and the projection likewise (GC time lands in whatever
# allocates). A larger young generation makes batches die before they are ever scanned, and
# rarer older-generation passes keep the queued batches from being rescanned (benchmarks/
# ingest.py, Nov 2026: 100,000/20/20 → 17.7-18.2k events/s, 1,000,000/100/100 → 20.1k).
GC_THRESHOLD = (1_000_000, 100, 100)
GC_INTERVAL = 600.0


def tune_gc() -> None:
    """Raise the cyclic GC thresholds for the ingest process (idempotent, never lowers them).

    Also moves everything alive now (modules, configuration, routes) to the permanent
    generation, so full collections scan only what ingest allocates.
    """
    current = gc.get_threshold()
    if current[0] < GC_THRESHOLD[0]:
        gc.collect()  # what is garbage now must not be frozen forever
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLD)
        threading.Thread(target=_collect_periodically, name="heron-gc", daemon=True).start()


def _collect_periodically(interval: float = GC_INTERVAL) -> None:
    """With thresholds this high the oldest generation is almost never collected on its own;
    collect reference cycles (TLS, asyncio, exceptions) every ``interval`` seconds."""
    while True:
        time.sleep(interval)
        gc.collect()


def endpoint_ref(ep: Endpoint, ip: str) -> EndpointRef:
    """The index's EndpointRef for an endpoint."""
    return EndpointRef(uuid=ep.uuid, hostname=ep.hostname, ip=ip or ep.ip, group=ep.group)


def _wants(listener: EventListener) -> bool:
    """A listener (or the object of a bound-method listener) may define `wants_events()`.

    Performance: when every listener says no (e.g. MISP sync not configured), batches are
    not queued at all and their EdrData is never built.
    """
    probe = getattr(listener, "wants_events", None)
    if probe is None:
        probe = getattr(getattr(listener, "__self__", None), "wants_events", None)
    if probe is None:
        return True
    try:
        return bool(probe())
    except Exception:
        logger.error("wants_events() of %r failed", listener, exc_info=True)
        return True


class ListenerDispatcher:
    """Runs event listeners on one background thread with a bounded queue."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.listeners: list[EventListener] = []
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize)
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def dispatch(
        self,
        endpoint: Endpoint,
        events: list[dict[str, Any]],
        prepare: Callable[[], None] | None = None,
    ) -> None:
        """Queue a batch; `prepare()` runs on the dispatcher thread before the listeners."""
        if not any(_wants(listener) for listener in self.listeners):
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="event-listeners", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait((endpoint, events, prepare))
        except queue.Full:
            self.dropped += 1
            logger.warning("event listeners are behind: dropped a batch of %d events", len(events))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            endpoint, events, prepare = item
            try:
                if prepare is not None:
                    prepare()
            except Exception:
                logger.error("preparing events for listeners failed", exc_info=True)
            for listener in list(self.listeners):
                try:
                    listener(endpoint, events)
                except Exception:
                    logger.error("event listener %r failed", listener, exc_info=True)
            self._queue.task_done()

    def join(self) -> None:
        """Wait until every queued batch went through the listeners (tests, shutdown)."""
        if self._thread is not None:
            self._queue.join()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None


class Ingest:
    """Receives /logs batches for one manager."""

    def __init__(
        self,
        *,
        store: Store,
        events: EventSink,
        hub: StreamHub,
        reducer: Reducer,
        metrics: Metrics,
        limits: LimitsConfig,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.events = events
        self.hub = hub
        self.reducer = reducer
        self.metrics = metrics
        self.limits = limits
        self.clock = clock
        self.dispatcher = ListenerDispatcher()
        self.rule_states = RuleStates(store)
        self.budget = MemoryBudget(limits.logs_inflight_memory)
        self.disk: DiskGuard | None = None  # set by build_context
        self.suppressions: ActiveSuppressions | None = None  # set by build_context
        tune_gc()
        self._presence: dict[str, tuple[float, float | None, float | None, str]] = {}
        self._presence_lock = threading.Lock()
        self._last_flush = 0.0
        metrics.counter("heron_events_received_total", "events accepted durably on /logs")
        metrics.counter("heron_batches_received_total", "/logs batches accepted")
        metrics.counter("heron_batches_duplicate_total", "/logs batches already stored (retries)")
        metrics.counter("heron_detections_received_total", "events carrying a detection")
        metrics.counter(
            "heron_detections_suppressed_total", "signatures removed at ingest by a suppression"
        )
        metrics.counter(
            "heron_event_fields_cut_total",
            "string fields cut to store an event over limits.event_stored",
        )
        metrics.counter(
            "heron_fanout_errors_total", "stored batches whose detections/streams fan-out failed"
        )
        metrics.gauge(
            "heron_events_per_second",
            "events received per second (last 60 s)",
            metrics.events_per_second,
        )
        metrics.gauge(
            "heron_logs_budget_refused_total",
            "/logs batches answered 503: the in-flight memory budget stayed full",
            lambda: float(self.budget.refused),
        )
        metrics.gauge(
            "heron_listener_dropped_total",
            "batches dropped by slow event listeners",
            lambda: float(self.dispatcher.dropped),
        )

    @property
    def listeners(self) -> list[EventListener]:
        """Hooks called with (endpoint, events) after each durable batch (MISP sync etc.)."""
        return self.dispatcher.listeners

    def decode(self, body: bytes, encoding: str | None) -> tuple[bytes, int]:
        """Decompress a batch and check its caps before decoding; (NDJSON bytes, est. cost).

        Security: bytes alone do not bound memory (500,000 `{"Event":{}}` lines are
        13 KB gzipped, 6.5 GB once indexed): events per batch and the estimated memory are
        capped too, from a newline count, before a single event is decoded.
        """
        data = decompress(body, encoding, self.limits.logs_body, what="/logs body")
        lines = count_lines(data)
        if lines > self.limits.logs_events:
            raise PayloadTooLarge(
                f"/logs body: {lines} events, more than {self.limits.logs_events} "
                "events per batch (limits.logs_events): split the batch"
            )
        cost = estimate_batch(lines, len(data))
        if cost > self.limits.logs_batch_memory:
            raise PayloadTooLarge(
                f"/logs body: {lines} events in {len(data)} bytes would take about {cost} bytes "
                f"of memory, more than {self.limits.logs_batch_memory} "
                "(limits.logs_batch_memory): split the batch"
            )
        return data, cost

    def ingest(
        self,
        endpoint: Endpoint,
        peer_ip: str,
        body: bytes,
        encoding: str | None,
        batch_id: str | None,
    ) -> wire.LogsAck:
        if self.disk is not None:
            self.disk.check("/logs")
        data, cost = self.decode(body, encoding)
        with self.budget.reserve(cost, what="/logs"):
            events = split_ndjson(data, max_line=self.limits.event_line, what="/logs body")
            self._cut(events, data)
            del data
            return self._ingest(endpoint, peer_ip, events, batch_id)

    def _cut(self, events: list[dict[str, Any]], data: bytes) -> None:
        """Cut the events longer than `limits.event_stored` (see services/cut.py)."""
        budget = self.limits.event_stored
        cut = 0
        for index, length in long_lines(data, budget).items():
            if index < len(events):
                cut += cut_event(events[index], length, budget)
        if cut:
            self.metrics.inc("heron_event_fields_cut_total", cut)

    def _ingest(
        self,
        endpoint: Endpoint,
        peer_ip: str,
        events: list[dict[str, Any]],
        batch_id: str | None,
    ) -> wire.LogsAck:
        now = self.clock()
        batch_id = batch_id or f"auto-{uuidlib.uuid4()}"
        ip = peer_ip or endpoint.ip
        self._suppress(events, endpoint)
        with _encodable("/logs body"):
            self._enrich(events, endpoint, ip, now, everything=bool(self.hub.subscribers))
        with index_errors("/logs body"), _encodable("/logs body"):
            result = self.events.append(
                events, endpoint=endpoint_ref(endpoint, ip), batch_id=batch_id
            )
        duplicate = bool(getattr(result, "duplicate", False))
        if duplicate:
            self.metrics.inc("heron_batches_duplicate_total")
            with self._fan_out("presence", endpoint):
                self.touch(endpoint.uuid, ip)
            return wire.LogsAck(batch_id=batch_id, accepted=0, duplicate=True)
        self.metrics.events_received(len(events))
        self.metrics.inc("heron_batches_received_total")
        # stored already: nothing below may turn the answer into an error (the
        # agent's retry would be a "duplicate" and the fan-out lost for good).
        last_event: float | None = now
        last_det: float | None = None
        with self._fan_out("detections/reports", endpoint):
            last_event, last_det = self._after_durable(endpoint, events, now)
        with self._fan_out("streams", endpoint):
            self.hub.publish(events)
        with self._fan_out("listeners", endpoint):
            self.dispatcher.dispatch(
                endpoint,
                events,
                lambda: self._enrich(events, endpoint, ip, now, everything=True, first=False),
            )
        with self._fan_out("presence", endpoint):
            self.touch(endpoint.uuid, ip, last_event, last_det)
        with self._fan_out("agent counters", endpoint):
            self._agent_counters(endpoint, events, now)
        with self._fan_out("rules state", endpoint):
            self.rule_states.observe(endpoint.uuid, events, now)
        return wire.LogsAck(batch_id=batch_id, accepted=len(events), duplicate=False)

    def _suppress(self, events: list[dict[str, Any]], endpoint: Endpoint) -> None:
        """Apply the group's suppressions (services/suppressing.py); a failure keeps the batch."""
        if self.suppressions is None:
            return
        try:
            removed = self.suppressions.apply(events, endpoint.group)
        except Exception:
            logger.exception("suppressions not applied to a /logs batch of %s", endpoint.uuid)
            return
        if removed:
            self.metrics.inc("heron_detections_suppressed_total", removed)

    def _agent_counters(self, ep: Endpoint, events: list[dict[str, Any]], now: float) -> None:
        """Keep the latest `Heron-Agent` 9010 counters of the endpoint (shown on /endpoints)."""
        latest = None
        for event in events:
            system = event["Event"].get("System")
            if (
                isinstance(system, dict)
                and system.get("Channel") == AGENT_CHANNEL
                and _int(system.get("EventID")) == AGENT_COUNTERS
            ):
                data = event["Event"].get("EventData")
                latest = data.get("Counters") if isinstance(data, dict) else None
        if not isinstance(latest, str) or len(latest) > MAX_COUNTERS:
            return
        try:
            doc = orjson.loads(latest)
        except orjson.JSONDecodeError:
            return  # not counters an agent wrote: nothing to keep
        if isinstance(doc, dict):
            doc["time"] = now
            self.store.documents.put(COUNTERS_KIND, ep.uuid, orjson.dumps(doc).decode(), "", now)

    @contextmanager
    def _fan_out(self, what: str, endpoint: Endpoint) -> Iterator[None]:
        """Count and log a failure of one fan-out step of a stored batch; never raise."""
        try:
            yield
        except Exception:
            self.metrics.inc("heron_fanout_errors_total")
            logger.exception(
                "%s fan-out of a stored /logs batch failed (endpoint %s)", what, endpoint.uuid
            )

    @staticmethod
    def _enrich(
        events: list[dict[str, Any]],
        ep: Endpoint,
        ip: str,
        now: float,
        *,
        everything: bool,
        first: bool = True,
    ) -> None:
        """Set `Event.EdrData` on detections (on every event if `everything`).

        The first pass drops whatever EdrData the agent sent (agents cannot choose their
        identity); a later pass (`first=False`) completes the events the first one skipped.
        Performance: the event store sets the same EdrData on its own copies; we build it only
        for what we fan out ourselves: detections and open streams on the request path, every
        event for the listeners on their dispatcher thread.
        """
        receipt = rfc3339(now)
        ref = {"UUID": ep.uuid, "IP": ip, "Hostname": ep.hostname, "Group": ep.group}
        for event in events:
            inner = event["Event"]
            if first:
                inner.pop("EdrData", None)
            elif "EdrData" in inner:
                continue
            det = inner.get("Detection")
            detected = bool(isinstance(det, dict) and det.get("Signature"))
            if not (everything or detected):
                continue
            inner["EdrData"] = {
                "Endpoint": ref,
                "Event": {"Hash": event_hash(event), "Detection": detected, "ReceiptTime": receipt},
            }

    def _after_durable(
        self, ep: Endpoint, events: list[dict[str, Any]], now: float
    ) -> tuple[float | None, float | None]:
        rows: list[DetectionRow] = []
        for event in events:
            inner = event["Event"]
            if "EdrData" not in inner or not inner["EdrData"]["Event"]["Detection"]:
                continue
            det = inner["Detection"]
            stamp = event_time(event)
            ts = stamp.timestamp() if isinstance(stamp, dt.datetime) else now
            raw_sigs = det.get("Signature")
            sigs = [str(s) for s in raw_sigs] if isinstance(raw_sigs, list) else [str(raw_sigs)]
            crit = _int(det.get("Criticality"))
            attack = det.get("ATTACK") if isinstance(det.get("ATTACK"), list) else None
            # None (no ATTACK block: an older agent): the API labels it from the rules
            techniques = (
                None
                if attack is None
                else sorted({str(a["ID"]) for a in attack if isinstance(a, dict) and a.get("ID")})
            )
            rows.append(
                (ep.uuid, ts, now, inner["EdrData"]["Event"]["Hash"], sigs, crit, techniques)
            )
            self.reducer.update(ep.uuid, ts, sigs, crit, attack)
        if rows:
            self.metrics.inc("heron_detections_received_total", len(rows))
            self.store.detections.add_many(rows)
            self.reducer.commit(ep.uuid, self.store.reports, now)
        return (now if events else None), (now if rows else None)

    def touch(
        self, uuid: str, ip: str, last_event: float | None = None, last_det: float | None = None
    ) -> None:
        """Record that an endpoint talked to us; flushed to the store every couple of seconds."""
        if self.note(uuid, ip, last_event, last_det):
            self.flush_presence(due_only=True)

    def note(
        self, uuid: str, ip: str, last_event: float | None = None, last_det: float | None = None
    ) -> bool:
        """`touch` in memory only (never waits on the store: the TLS front's loop calls it);
        True when the batch is due to be written by `flush_presence`."""
        now = self.clock()
        with self._presence_lock:
            old = self._presence.get(uuid)
            if old is not None:
                last_event = last_event or old[1]
                last_det = last_det or old[2]
            self._presence[uuid] = (now, last_event, last_det, ip)
            return now - self._last_flush >= PRESENCE_FLUSH

    def flush_presence(self, *, due_only: bool = False) -> None:
        """Write the presence batch (`due_only`: unless another thread just did)."""
        with self._presence_lock:
            if due_only and self.clock() - self._last_flush < PRESENCE_FLUSH:
                return
            seen, self._presence = self._presence, {}
            self._last_flush = self.clock()
        if seen:
            self.store.endpoints.touch(seen)

    def close(self) -> None:
        self.flush_presence()
        self.dispatcher.close()


@contextmanager
def _encodable(what: str) -> Iterator[None]:
    """An event orjson cannot encode (an integer over 64 bits) is the sender's fault: 422."""
    try:
        yield
    except orjson.JSONEncodeError as ex:
        raise ValidationError(f"{what}: {ex}") from ex


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
