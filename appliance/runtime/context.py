"""AppContext: every collaborator the Falcon apps need, built once by the CLI or a test.

Extensions (MISP sync, the console) are in `extensions`, found by their type; the start and stop
order of the running manager is `runtime/lifecycle.py`'s."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from index import IndexHealth

from ..core.config import Config
from ..core.metrics import Metrics
from ..misp.integration import MispExtension
from ..security.pki import Pki
from ..services.artifacts import ArtifactStore
from ..services.content import Content
from ..services.diskguard import DiskGuard
from ..services.hunting import Hunting
from ..services.huntjobs import HuntJobs, HuntLimits
from ..services.identity import Identity
from ..services.ingest import EventListener, Ingest
from ..services.retention import Retention
from ..services.scoring import Reducer, SharedReducer
from ..services.streams import StreamHub
from ..services.suppressing import ActiveSuppressions
from ..services.tuning import Tuning
from ..store import Store
from ..store.events import EventSink
from ..transport.bell import CommandBell
from ..transport.identities import IdentityMap
from .extension import Extensions
from .leader import Leadership, SoleLeader

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
    retention: Retention
    tuning: Tuning
    bell: CommandBell = field(default_factory=CommandBell)  # wakes long-polls (transport/bell.py)
    disk: DiskGuard | None = None  # set by build_context
    hunts: HuntJobs | None = None  # retro-hunt jobs, set by build_context
    stopping: threading.Event = field(default_factory=threading.Event)  # set at shutdown
    sleep: Callable[[float], None] = time.sleep
    extensions: Extensions = field(default_factory=Extensions)
    leadership: Leadership = field(default_factory=SoleLeader)  # cluster: runtime/leader.py
    # rule -> ATT&CK labels of the alerts API, keyed by the rules table's digest
    attack_by_rule: tuple[tuple[object, ...], dict[str, list[dict[str, str]]]] | None = None

    @property
    def event_listeners(self) -> list[EventListener]:
        """Register `fn(endpoint, events)` here to see every durable batch (MISP sync)."""
        return self.ingest.listeners

    def begin_shutdown(self) -> None:
        """End what holds requests open (streams, hunts, long-polls) before the servers stop."""
        self.stopping.set()
        self.hub.close()
        if self.hunts is not None:
            self.hunts.close(timeout=2.0)

    def close(self, *, drain_index: bool = True) -> None:
        """Stop streams and hunts, flush ingest bookkeeping, close the event and fleet stores.

        `drain_index=False`: the event index is not brought up to date now; the journal is
        replayed at the next start (a quick manager stop).
        """
        self.begin_shutdown()
        self.ingest.close()
        try:
            if drain_index:
                self.events.close()
            else:
                close = self.events.close
                try:
                    close(drain=False)  # type: ignore[call-arg]
                except TypeError:  # an event sink without a queue (memory, cluster)
                    close()
        finally:
            self.store.close()


def _rule_counts(ctx: AppContext) -> dict[str, int]:
    """Endpoints per rule-state status (services/rulestate.py), for /metrics."""
    uuids = [e.uuid for e in ctx.store.endpoints.list(status="active")]
    return ctx.ingest.rule_states.counts(uuids, ctx.content.rules_text()[1])


def build_context(
    *,
    data_dir: Path,
    config: Config | None = None,
    store: Store | None = None,
    events: EventSink,
    pki: Pki | None = None,
    clock: Callable[[], float] = time.time,
    identities: IdentityMap | None = None,
) -> AppContext:
    """Wire the services over the given (or default) collaborators."""
    config = config or Config()
    store = store if store is not None else Store(":memory:")
    metrics = Metrics(clock)
    hub = StreamHub(
        max_clients=config.streams.max_clients,
        queue=config.streams.queue,
        buffer=config.streams.buffer,
        stall=config.streams.stall,
        heartbeat=config.streams.heartbeat,
    )
    reducer = (
        SharedReducer(store.reports, store.changes)
        if store.shared
        else Reducer(store.reports.load_all())
    )
    ingest = Ingest(
        store=store,
        events=events,
        hub=hub,
        reducer=reducer,
        metrics=metrics,
        limits=config.limits,
        clock=clock,
    )
    artifacts = ArtifactStore(
        data_dir / "artifacts",
        store,
        clock=clock,
        max_size=config.limits.upload_size,
        max_chunk=config.limits.upload_chunk,
        parts_quota=config.limits.upload_parts_quota,
        expiry=config.limits.upload_expiry,
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
        artifacts=artifacts,
        # [retention] pass + its /metrics counters (the worker: runtime/lifecycle.py)
        retention=Retention(
            events=events,
            detections=store.detections,
            config=config.retention,
            clock=clock,
            metrics=metrics,
            artifacts=artifacts,
        ),
        tuning=Tuning(store, data_dir / "artifacts", clock),
    )
    hunting = Hunting(events)
    ctx.hunts = HuntJobs(
        hunting,
        HuntLimits(**dataclasses.asdict(config.hunt)),
        store=lambda job: hunting.store_matches(job.id, job.matches),
        clock=clock,
    )
    ingest.suppressions = ActiveSuppressions(ctx.tuning, clock)
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
        "heron_stream_stalled_total",
        "SSE streams closed because their client stopped reading",
        lambda: float(hub.stalled),
    )
    metrics.gauge(
        "heron_endpoints_online",
        "endpoints seen in the last 5 minutes",
        lambda: float(store.endpoints.count_online(clock() - 300.0)),
    )
    metrics.gauge(
        "heron_store_queue",
        "writes waiting for the fleet store writer",
        lambda: float(store.db.pending_writes),
    )
    metrics.gauge(
        "heron_store_write_failures_total",
        "fleet store writes that failed (logged; raised to the caller that waits)",
        lambda: float(store.db.failed_writes),
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
    misp = MispExtension(ctx)  # built-in; attached on first use (/misp routes, the worker)
    ctx.extensions.add(misp)
    metrics.gauge(
        "heron_misp_queue",
        "sighting batches waiting for MISP (0 without MISP sync)",
        lambda: float(misp.queued_batches()),
    )
    health: Callable[[], IndexHealth] | None = getattr(events, "health", None)
    if callable(health):  # index.EventStore (and the cluster sink): the writer's health
        metrics.gauge(
            "heron_index_backlog_events",
            "journaled events not yet handed to the event index",
            lambda: float(health().backlog),
        )
        metrics.gauge(
            "heron_index_healthy",
            "1 while the event index has no indexing error (0: see /healthz)",
            lambda: 1.0 if health().ok else 0.0,
        )
    journal = getattr(events, "journal", None)
    if journal is not None:  # index.EventStore: group commits of /logs batches
        metrics.gauge(
            "heron_journal_syncs",
            "journal fsyncs since start (one per group of concurrent /logs batches)",
            lambda: float(journal.syncs),
        )
    return ctx
