"""Several MISP instances: one `MispSync` per instance, each with its own settings and state.

The default instance lives in `<data>/misp/` (as with one instance); others in
`<data>/misp/instances/<name>/`, created and removed through the admin API. Each instance pulls
its IoCs under its own `source_name` (the IoC table keeps them apart), sights the values of its
own IoCs, pushes reports to its own day events (own namespace) if its reports are enabled, and
keeps its own queues, dead letters and status. The registry is an ingest listener (fan-out to
the extra instances) and the worker's unit of work (`run_pending` runs every instance in turn).
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import MispSettingsError
from .service import MispSync
from .settings import MispSettings, key_path_for

__all__ = ["DEFAULT", "MAX_INSTANCES", "MispInstances"]

logger = logging.getLogger(__name__)

DEFAULT = "default"
MAX_INSTANCES = 16
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


class MispInstances:
    """The default MispSync plus named extra instances."""

    def __init__(
        self, root: Path, default: MispSync, build: Callable[[Path, MispSettings | None], MispSync]
    ) -> None:
        self.root = Path(root)
        self.default = default
        self._build = build
        self._lock = threading.Lock()
        self._extra: dict[str, MispSync] = {}
        base = self.root / "instances"
        if base.is_dir():
            for path in sorted(base.iterdir()):
                if path.is_dir() and NAME.match(path.name):
                    self._extra[path.name] = build(path, None)

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
            sync = self._build(self.root / "instances" / name, settings)
            self._extra[name] = sync
        logger.info("MISP instance %s added (%s)", name, settings.url)
        return sync

    def delete(self, name: str) -> None:
        """Remove an instance: its IoCs leave the IoC table, its state is deleted."""
        with self._lock:
            sync = self._extra.pop(name)
        sync.sink.replace_iocs(sync.settings.source_name, [])
        sync.close()
        shutil.rmtree(self.root / "instances" / name, ignore_errors=True)
        key_path_for(self.root / "instances" / name).unlink(missing_ok=True)
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
