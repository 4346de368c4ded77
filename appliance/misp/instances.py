"""Several MISP instances: one `MispSync` per instance, each with its own settings and state.

The default instance lives in `<data>/misp/` (as with one instance); others in
`<data>/misp/instances/<name>/`, created and removed through the admin API. Each instance pulls
its IoCs under its own `source_name` (the IoC table keeps them apart), sights the values of its
own IoCs, pushes reports to its own day events (own namespace) if its reports are enabled, and
keeps its own queues, dead letters and status. The registry is an ingest listener (fan-out to
the extra instances) and the worker's unit of work (`run_pending` runs every instance in turn).
Where the extra instances live is a catalog: `FileCatalog` (the directories above), or in cluster
mode `pgstore.PgCatalog` (PostgreSQL, shared by every front-end; `refresh` follows its changes).
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from .errors import MispSettingsError
from .service import MispSync
from .settings import MispSettings, key_path_for

__all__ = ["DEFAULT", "MAX_INSTANCES", "FileCatalog", "InstanceCatalog", "MispInstances"]

logger = logging.getLogger(__name__)

DEFAULT = "default"
MAX_INSTANCES = 16
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


class InstanceCatalog(Protocol):
    """Where the extra instances are kept."""

    def names(self) -> list[str]: ...

    def open(self, name: str, settings: MispSettings | None) -> MispSync:
        """The stored instance (`settings` None), or a new one with `settings`."""
        ...

    def remove(self, name: str) -> None: ...


class FileCatalog:
    """Extra instances under `<root>/instances/<name>/` (embedded mode)."""

    def __init__(self, root: Path, build: Callable[[Path, MispSettings | None], MispSync]) -> None:
        self.root = Path(root)
        self._build = build

    def names(self) -> list[str]:
        base = self.root / "instances"
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def open(self, name: str, settings: MispSettings | None) -> MispSync:
        return self._build(self.root / "instances" / name, settings)

    def remove(self, name: str) -> None:
        shutil.rmtree(self.root / "instances" / name, ignore_errors=True)
        key_path_for(self.root / "instances" / name).unlink(missing_ok=True)


class MispInstances:
    """The default MispSync plus named extra instances."""

    def __init__(
        self,
        root: Path,
        default: MispSync,
        build: Callable[[Path, MispSettings | None], MispSync],
        catalog: InstanceCatalog | None = None,
    ) -> None:
        self.root = Path(root)
        self.default = default
        self.catalog: InstanceCatalog = catalog or FileCatalog(self.root, build)
        self._lock = threading.Lock()
        self._extra: dict[str, MispSync] = {}
        for name in self.catalog.names():
            if NAME.match(name):
                self._extra[name] = self.catalog.open(name, None)

    def refresh(self) -> None:
        """Follow the catalog (cluster mode: another front-end added or removed an instance,
        or changed one's settings or state): build the new, drop the gone, reload the others."""
        with self._lock:
            names = {n for n in self.catalog.names() if NAME.match(n)}
            gone = [self._extra.pop(n) for n in sorted(set(self._extra) - names)]
            for name in sorted(names - set(self._extra)):
                self._extra[name] = self.catalog.open(name, None)
                logger.info("MISP instance %s added on another front-end", name)
            kept = list(self._extra.values())
        for sync in gone:
            sync.close()  # its IoCs were removed by the front-end that deleted it
        for sync in kept:
            sync.reload()

    def names(self) -> list[str]:
        with self._lock:
            return [DEFAULT, *sorted(self._extra)]

    def get(self, name: str | None) -> MispSync:
        """The instance called `name` (the default for None or "default"); KeyError if unknown."""
        if name in (None, "", DEFAULT):
            return self.default
        with self._lock:
            return self._extra[str(name)]

    def all(self) -> list[tuple[str, MispSync]]:
        with self._lock:
            return [(DEFAULT, self.default), *sorted(self._extra.items())]

    def create(self, name: str, patch: Mapping[str, Any]) -> MispSync:
        """A new instance with these settings; its `source_name` defaults to `misp-<name>`."""
        if not NAME.match(name) or name == DEFAULT:
            raise MispSettingsError(
                "instance name: 1-32 lower-case letters, digits or '-', not 'default'",
                operation="instances",
            )
        settings = MispSettings.from_dict({"source_name": f"misp-{name}", **patch})
        with self._lock:
            if name in self._extra:
                raise MispSettingsError(f"instance {name!r} exists", operation="instances")
            if len(self._extra) + 1 >= MAX_INSTANCES:
                raise MispSettingsError(f"at most {MAX_INSTANCES} instances", operation="instances")
            taken = {s.settings.source_name for s in (self.default, *self._extra.values())}
            if settings.source_name in taken:
                raise MispSettingsError(
                    f"source_name {settings.source_name!r} is used by another instance",
                    operation="instances",
                )
            sync = self.catalog.open(name, settings)
            self._extra[name] = sync
        logger.info("MISP instance %s added (%s)", name, settings.url)
        return sync

    def delete(self, name: str) -> None:
        """Remove an instance: its IoCs leave the IoC table, its state is deleted."""
        with self._lock:  # held throughout: `refresh` must not build it again meanwhile
            sync = self._extra.pop(name)
            sync.sink.replace_iocs(sync.settings.source_name, [])
            sync.close()
            self.catalog.remove(name)
        logger.info("MISP instance %s removed", name)

    # --- fan-out ----------------------------------------------------------------------------------

    def wants_events(self) -> bool:
        """Whether an extra instance wants event batches (the default is its own listener)."""
        return any(s.wants_events() for _, s in self.all()[1:])

    def on_events(self, endpoint: Any, events: list[dict[str, Any]]) -> None:
        for _, sync in self.all()[1:]:
            sync.on_events(endpoint, events)

    def run_pending(self) -> None:
        for name, sync in self.all():
            try:
                sync.run_pending()
            except Exception:
                logger.error("MISP instance %s: run_pending failed", name, exc_info=True)

    def close(self) -> None:
        for _, sync in self.all():
            sync.close()
