"""AppContext: every collaborator the Falcon apps need, built once by the CLI or a test."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.config import Config
from ..core.metrics import Metrics
from ..security.pki import Pki
from ..services.artifacts import ArtifactStore
from ..services.content import Content
from ..services.diskguard import DiskGuard
from ..services.identity import Identity
from ..services.ingest import EventListener, Ingest
from ..services.retention import retention_for
from ..services.scoring import Reducer
from ..services.streams import StreamHub
from ..store import Store
from ..store.events import EventSink
from ..transport.longpoll import CommandBell
from ..transport.tlsfront import IdentityMap

__all__ = ["AppContext", "build_context"]


@dataclass(slots=True)
class AppContext:
    """The manager's services, shared by the admin and endpoint apps."""

    config: Config
    data_dir: Path
    store: Store
    events: EventSink
    pki: Pki | None
    clock: Callable[[], float]
    identities: IdentityMap
    metrics: Metrics
    hub: StreamHub
    reducer: Reducer
    identity: Identity
    ingest: Ingest
    content: Content
    artifacts: ArtifactStore
    bell: CommandBell = field(default_factory=CommandBell)  # wakes long-polls (longpoll.py)
    console: Any = None  # appliance.console.ConsoleAuth, mounted on the admin app when set
    disk: DiskGuard | None = None  # set by build_context
    sleep: Callable[[float], None] = time.sleep
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def event_listeners(self) -> list[EventListener]:
        """Register `fn(endpoint, events)` here to see every durable batch (MISP sync)."""
        return self.ingest.listeners

    def close(self) -> None:
        """Stop streams, flush ingest bookkeeping, close the event store and the fleet store."""
        self.hub.close()
        self.ingest.close()
        try:
            self.events.close()
        finally:
            self.store.close()


def _rule_counts(ctx: AppContext) -> dict[str, int]:
    """Endpoints per rule-state status (services/rulestate.py), for /metrics."""
    uuids = [e.uuid for e in ctx.store.endpoints.list(status="active")]
    return ctx.ingest.rule_states.counts(uuids, ctx.content.rules_text()[1])


def _misp_queue(ctx: AppContext) -> float:
    sync = ctx.extra.get("misp")
    if sync is None:
        return 0.0
    return float(sync.status().get("sightings", {}).get("queued_batches", 0))


def build_context(
    *,
    data_dir: Path,
    config: Config | None = None,
    store: Store | None = None,
    events: EventSink | None = None,
    pki: Pki | None = None,
    clock: Callable[[], float] = time.time,
    identities: IdentityMap | None = None,
) -> AppContext:
    """Wire the services over the given (or default) collaborators."""
    config = config or Config()
    store = store if store is not None else Store(":memory:")
    if events is None:
        from ..store.events import MemoryEventStore

        events = MemoryEventStore()
    metrics = Metrics(clock)
    hub = StreamHub(
        max_clients=config.streams.max_clients,
        queue=config.streams.queue,
        heartbeat=config.streams.heartbeat,
    )
    reducer = Reducer(store.reports.load_all())
    ingest = Ingest(
        store=store,
        events=events,
        hub=hub,
        reducer=reducer,
        metrics=metrics,
        limits=config.limits,
        clock=clock,
    )
    ctx = AppContext(
        config=config,
        data_dir=data_dir,
        store=store,
        events=events,
        pki=pki,
        clock=clock,
        identities=identities if identities is not None else IdentityMap(),
        metrics=metrics,
        hub=hub,
        reducer=reducer,
        identity=Identity(store=store, pki=pki, config=config, clock=clock),
        ingest=ingest,
        content=Content(store, clock),
        artifacts=ArtifactStore(
            data_dir / "artifacts",
            store,
            clock=clock,
            max_size=config.limits.upload_size,
            max_chunk=config.limits.upload_chunk,
            parts_quota=config.limits.upload_parts_quota,
            expiry=config.limits.upload_expiry,
        ),
    )
    disk = ctx.disk = ingest.disk = ctx.artifacts.disk = DiskGuard(
        data_dir, config.limits.min_free_bytes
    )
    metrics.gauge(
        "heron_disk_free_bytes",
        "free bytes on the data directory's disk",
        lambda: float(disk.free()),
    )
    metrics.gauge(
        "heron_disk_refused_total",
        "writes answered 503: disk almost full",
        lambda: float(disk.refused),
    )
    ctx.store.commands.on_add.append(ctx.bell.ring)
    metrics.gauge("heron_stream_clients", "open SSE streams", lambda: float(hub.clients))
    metrics.gauge(
        "heron_stream_dropped_total",
        "events dropped for slow stream clients",
        lambda: float(hub.dropped),
    )
    metrics.gauge(
        "heron_endpoints_online",
        "endpoints seen in the last 5 minutes",
        lambda: float(store.endpoints.count_online(clock() - 300.0)),
    )
    metrics.gauge(
        "heron_store_queue",
        "writes waiting for the fleet store writer",
        lambda: float(store.db._queue.qsize()),
    )
    metrics.gauge(
        "heron_commands_queued",
        "commands waiting for delivery",
        lambda: float(store.commands.pending_count()),
    )
    metrics.gauge("heron_uptime_seconds", "seconds since start", lambda: clock() - metrics.started)
    for status, what in (
        ("no-rules", "report running with no rules"),
        ("outdated", "run a rules hash other than the served one"),
        ("unknown", "never reported their rules"),
    ):
        metrics.gauge(
            f"heron_endpoints_rules_{status.replace('-', '_')}",
            f"enrolled endpoints that {what}",
            lambda s=status: float(_rule_counts(ctx)[s]),  # type: ignore[misc]
        )
    metrics.gauge(
        "heron_misp_queue",
        "sighting batches waiting for MISP (0 without MISP sync)",
        lambda: _misp_queue(ctx),
    )
    if callable(getattr(events, "health", None)):
        metrics.gauge(
            "heron_index_backlog_events",
            "journaled events not yet handed to the event index",
            lambda: float(events.health()["backlog"]),  # type: ignore[union-attr]
        )
        metrics.gauge(
            "heron_index_healthy",
            "1 while the event index has no indexing error (0: see /healthz)",
            lambda: 0.0 if events.health()["error"] else 1.0,  # type: ignore[union-attr]
        )
    retention_for(ctx)  # [retention] pass + its /metrics counters (worker: heron-manager run)
    return ctx
