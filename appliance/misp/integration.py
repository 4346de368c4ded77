"""Plugs MispSync into the manager as a built-in extension (runtime/extension.py).

`MispExtension(host)` builds the service on first use (`instances()`) over `<data>/misp/`, feeds
pulled IoCs into the fleet store's IoC table (so they reach agents through the normal `/iocs`
distribution), registers `on_events` on the event bus, and scans `<data>/artifacts/` for complete
IR reports. The lifecycle starts its background worker after the listeners (`start()`); tests
drive `run_pending()` themselves.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rules.wire import Ioc

from .client import ClientFactory, pymisp_factory
from .instances import MispInstances
from .pgstore import TOPIC
from .service import MispSync
from .settings import MispSettings, key_path_for
from .storage import MispStorage
from .worker import MispWorker

if TYPE_CHECKING:
    from ..api.openapi import FalconApp
    from ..runtime.extension import ManagerHost, SessionAuthority
    from ..store.content import Iocs
    from .pgstore import PgCatalog

__all__ = ["MispExtension", "StoreIocSink", "config_overrides"]

logger = logging.getLogger(__name__)


class StoreIocSink:
    """IocSink over the manager's IoC table.

    Uses the table's public API: upsert, list and delete by filters.
    """

    def __init__(self, table: Iocs, clock: Callable[[], float]) -> None:
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


def config_overrides(section: MispSettings | Mapping[str, Any] | None) -> dict[str, Any]:
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


class MispExtension:
    """The MISP sync of one manager: every instance, built on first use, and its worker."""

    name = "misp"
    sessions: SessionAuthority | None = None

    def __init__(
        self,
        host: ManagerHost,
        *,
        factory: ClientFactory = pymisp_factory,
        interval: float = 1.0,
    ) -> None:
        self.host = host
        self.factory = factory
        self.interval = interval
        self._lock = threading.Lock()
        self._instances: MispInstances | None = None
        self._worker: MispWorker | None = None

    @property
    def worker(self) -> MispWorker | None:
        """The background worker while started."""
        return self._worker

    @property
    def default(self) -> MispSync:
        """The default instance's MispSync, built and wired on first use."""
        return self.instances().default

    def instances(self) -> MispInstances:
        """Every MISP instance (the default one and the extra ones), built once."""
        with self._lock:
            if self._instances is not None:
                return self._instances
            default = self._attach()

            def build(root: Path, settings: MispSettings | None) -> MispSync:
                return MispSync.open(root, settings, **self._sync_kwargs())

            self._instances = MispInstances(
                self.host.data_dir / "misp", default, build, self._shared_catalog()
            )
            self.host.event_listeners.append(self._instances.on_events)  # extra instances
            return self._instances

    def queued_batches(self) -> int:
        """Sighting batches waiting for the default instance (0 before MISP is attached)."""
        if self._instances is None:
            return 0
        return int(self._instances.default.status().get("sightings", {}).get("queued_batches", 0))

    def mount(self, app: FalconApp) -> None:
        from .resources import MISP_ROUTES

        for path, resource, suffix in MISP_ROUTES:
            if suffix:
                app.add_route(path, resource(self), suffix=suffix)
            else:
                app.add_route(path, resource(self))

    def start(self) -> None:
        """Start (once) the background worker of every instance."""
        if self._worker is None:
            self._worker = MispWorker(self.instances(), interval=self.interval).start()

    def stop(self) -> None:
        """Stop the worker and close the clients (manager shutdown; idempotent)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()
        with self._lock:
            instances, self._instances = self._instances, None
        if instances is not None:
            instances.close()

    def _sync_kwargs(self) -> dict[str, Any]:
        host = self.host
        return {
            "clock": host.clock,
            "sink": StoreIocSink(host.store.iocs, host.clock),
            "factory": self.factory,
            "artifacts_root": host.data_dir / "artifacts",
            "endpoint_lookup": host.store.endpoints.find,
            "leads": host.leadership.leads,
        }

    def _attach(self) -> MispSync:
        overrides = config_overrides(self.host.config.misp)
        default = MispSettings.from_dict(overrides) if overrides else None
        storage = self._shared_storage()
        if storage is None:
            sync = MispSync.open(self.host.data_dir / "misp", default, **self._sync_kwargs())
        else:
            assert storage.settings is not None
            sync = MispSync(storage.settings.load(default), storage, **self._sync_kwargs())
            self.host.store.changes.subscribe(TOPIC, self._changed)
        if overrides:
            stored = sync.settings.to_dict()
            if any(stored.get(k) != v for k, v in overrides.items()):
                sync.update_settings(overrides)  # the config file wins over API edits for its keys
        self.host.event_listeners.append(sync.on_events)
        logger.info("MISP sync attached (enabled=%s)", sync.settings.enabled)
        return sync

    def _shared_storage(self) -> MispStorage | None:
        """Cluster mode: the default instance's settings, state and queues in PostgreSQL."""
        store = self.host.store
        if not store.shared:
            return None
        from ..store.postgres import PgDatabase
        from .pgstore import pg_storage

        assert isinstance(store.db, PgDatabase)
        cluster = self.host.config.cluster
        return pg_storage(
            store.db,
            key_path_for(self.host.data_dir / "misp"),
            cluster.frontend or socket.gethostname(),
            self.host.clock,
        )

    def _shared_catalog(self) -> PgCatalog | None:
        """Cluster mode: the extra instances in PostgreSQL, keys under the shared misp.key."""
        store = self.host.store
        if not store.shared:
            return None
        from ..store.postgres import PgDatabase
        from .pgstore import PgCatalog

        assert isinstance(store.db, PgDatabase)

        def build(storage: MispStorage) -> MispSync:
            assert storage.settings is not None
            return MispSync(storage.settings.load(None), storage, **self._sync_kwargs())

        return PgCatalog(
            store.db,
            key_path_for(self.host.data_dir / "misp"),
            self.host.config.cluster.frontend or socket.gethostname(),
            self.host.clock,
            build,
        )

    def _changed(self) -> None:
        """NOTIFY heron_fleet, 'misp': another front-end changed the settings or the state
        (of any instance), or added or removed an instance."""
        instances = self._instances
        if instances is not None:
            instances.default.reload()
            instances.refresh()
