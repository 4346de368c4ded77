"""Plugs MispSync into the manager: IoC table sink, ingest listener, artifacts, worker lifecycle.

`attach_misp(ctx)` builds the service once per AppContext (kept in `ctx.extra["misp"]`) over
`<data>/misp/`, feeds pulled IoCs into the fleet store's IoC table (so they reach agents through the
normal `/iocs` distribution), registers `on_events` as an ingest listener, and scans
`<data>/artifacts/` for complete IR reports. `start_misp_worker(ctx)` starts the background worker
(the server's run path calls it; tests drive `run_pending()` themselves).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from rules.wire import Ioc

from .client import ClientFactory, pymisp_factory
from .instances import MispInstances
from .service import MispSync, MispWorker
from .settings import MispSettings

__all__ = [
    "StoreIocSink",
    "attach_instances",
    "attach_misp",
    "config_overrides",
    "start_misp_worker",
]

logger = logging.getLogger(__name__)

EXTRA_KEY = "misp"
INSTANCES_KEY = "misp_instances"
WORKER_KEY = "misp_worker"
LOCK_KEY = "misp_lock"


class StoreIocSink:
    """IocSink over the manager's IoC table.

    Uses the table's public API: upsert, list and delete by filters.
    """

    def __init__(self, table: Any, clock: Callable[[], float]) -> None:
        self.table = table
        self.clock = clock

    def replace_iocs(self, source: str, iocs: Sequence[Ioc]) -> None:
        current = {i.uuid: i for i in self.table.list({"source": source}, any_of=False)}
        wanted = {i.uuid: i for i in iocs}
        for stale in sorted(set(current) - set(wanted)):
            self.table.delete({"uuid": stale, "source": source})
        changed = [i for u, i in wanted.items() if current.get(u) != i]
        if changed:
            self.table.upsert(changed, self.clock())
        logger.debug(
            "MISP IoCs: %d kept, %d changed, %d removed",
            len(wanted),
            len(changed),
            len(set(current) - set(wanted)),
        )


def config_overrides(section: Any) -> dict[str, Any]:
    """The `[misp]` config keys that differ from the defaults.

    They win over settings stored through the API.
    """
    if section is None:
        return {}
    if isinstance(section, Mapping):
        return dict(section)
    defaults = MispSettings()
    out = {}
    for f in fields(MispSettings):
        value = getattr(section, f.name, None)
        if value is not None and value != getattr(defaults, f.name):
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def attach_misp(ctx: Any, *, factory: ClientFactory = pymisp_factory) -> MispSync:
    """The context's default MispSync, built and wired on first call (idempotent)."""
    return attach_instances(ctx, factory=factory).default


def attach_instances(ctx: Any, *, factory: ClientFactory = pymisp_factory) -> MispInstances:
    """Every MISP instance of the context (the default one and the extra ones), built once."""
    with ctx.extra.setdefault(LOCK_KEY, threading.Lock()):
        existing = ctx.extra.get(INSTANCES_KEY)
        if isinstance(existing, MispInstances):
            return existing
        default = _attach(ctx, factory)

        def build(root: Path, settings: MispSettings | None) -> MispSync:
            return MispSync.open(root, settings, **_sync_kwargs(ctx, factory))

        instances = MispInstances(ctx.data_dir / "misp", default, build)
        ctx.extra[INSTANCES_KEY] = instances
        ctx.event_listeners.append(instances.on_events)  # the extra instances' sightings
        return instances


def _sync_kwargs(ctx: Any, factory: ClientFactory) -> dict[str, Any]:
    return {
        "clock": ctx.clock,
        "sink": StoreIocSink(ctx.store.iocs, ctx.clock),
        "factory": factory,
        "artifacts_root": ctx.data_dir / "artifacts",
        "endpoint_lookup": ctx.store.endpoints.find,
    }


def _attach(ctx: Any, factory: ClientFactory) -> MispSync:
    overrides = config_overrides(getattr(ctx.config, "misp", None))
    sync = MispSync.open(
        ctx.data_dir / "misp",
        MispSettings.from_dict(overrides) if overrides else None,
        **_sync_kwargs(ctx, factory),
    )
    if overrides:
        stored = sync.settings.to_dict()
        if any(stored.get(k) != v for k, v in overrides.items()):
            sync.update_settings(overrides)  # the config file wins over API edits for its keys
    ctx.extra[EXTRA_KEY] = sync
    ctx.event_listeners.append(sync.on_events)
    logger.info("MISP sync attached (enabled=%s)", sync.settings.enabled)
    return sync


def start_misp_worker(ctx: Any, *, interval: float = 1.0) -> MispWorker:
    """Start (once) the background worker of the context's MispSync."""
    worker = ctx.extra.get(WORKER_KEY)
    if isinstance(worker, MispWorker):
        return worker
    worker = MispWorker(attach_instances(ctx), interval=interval).start()
    ctx.extra[WORKER_KEY] = worker
    return worker


def stop_misp(ctx: Any) -> None:
    """Stop the worker and close the client (manager shutdown)."""
    worker = ctx.extra.pop(WORKER_KEY, None)
    if isinstance(worker, MispWorker):
        worker.stop()
    instances = ctx.extra.pop(INSTANCES_KEY, None)
    sync = ctx.extra.pop(EXTRA_KEY, None)
    if isinstance(instances, MispInstances):
        instances.close()
    elif isinstance(sync, MispSync):
        sync.close()
