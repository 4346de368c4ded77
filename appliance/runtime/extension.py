"""How a built-in extension (MISP sync, the web console) plugs into the manager.

An extension is built over a `ManagerHost` (what it may use of the manager: settings, the fleet
store, the data directory, the clock, metrics and the event bus), mounts its routes on the admin
app, and is started after the listeners and stopped before them by the lifecycle
(`runtime/lifecycle.py`). The manager finds one by its type (`ctx.extensions.get(MispExtension)`),
never by a string key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    import falcon

    from ..api.openapi import FalconApp
    from ..core.config import Config
    from ..core.metrics import Metrics
    from ..services.ingest import EventListener
    from ..store import Store
    from ..store.models import User
    from .leader import Leadership

__all__ = ["Extension", "Extensions", "ManagerHost", "SessionAuthority"]

logger = logging.getLogger(__name__)

E = TypeVar("E")


class ManagerHost(Protocol):
    """What an extension gets from the manager (an `AppContext` is one)."""

    @property
    def config(self) -> Config: ...

    @property
    def data_dir(self) -> Path: ...

    @property
    def store(self) -> Store: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def leadership(self) -> Leadership:
        """Which cluster-wide jobs this front-end runs (embedded mode: all)."""
        ...

    @property
    def event_listeners(self) -> list[EventListener]:
        """The event bus: `fn(endpoint, events)` after each durable batch."""
        ...


class SessionAuthority(Protocol):
    """An extension that logs browsers in: its sessions authenticate like API keys."""

    def resolve_session(self, req: falcon.Request) -> User | None: ...

    def admits_cookies(self, cookies: str) -> bool:
        """True when a `Cookie` header names an open session (connection admission only)."""
        ...


class Extension(Protocol):
    """A part of the manager beside the core API, with its own routes and background work."""

    @property
    def name(self) -> str: ...

    @property
    def sessions(self) -> SessionAuthority | None: ...

    def mount(self, app: FalconApp) -> None:
        """Add the extension's routes to the admin app."""
        ...

    def start(self) -> None:
        """Start background work (the listeners already serve)."""
        ...

    def stop(self) -> None:
        """Stop background work and release what the extension holds (idempotent)."""
        ...


class Extensions:
    """The manager's extensions in start order; stopped in the reverse order."""

    def __init__(self) -> None:
        self._items: list[Extension] = []

    def add(self, extension: Extension) -> None:
        if any(type(e) is type(extension) for e in self._items):
            raise ValueError(f"extension {extension.name!r} is already added")
        self._items.append(extension)

    def get(self, kind: type[E]) -> E | None:
        """The extension of this type, or None when the manager runs without it."""
        for item in self._items:
            if isinstance(item, kind):
                return item
        return None

    def __iter__(self) -> Iterator[Extension]:
        return iter(list(self._items))

    @property
    def sessions(self) -> SessionAuthority | None:
        """The first extension that logs browsers in (the console), if any."""
        return next((e.sessions for e in self._items if e.sessions is not None), None)

    def start(self) -> None:
        """Start each extension; on a failure, stop the ones already started and re-raise."""
        started: list[Extension] = []
        try:
            for item in self._items:
                item.start()
                started.append(item)
        except BaseException:
            for item in reversed(started):
                _stop(item)
            raise

    def stop(self) -> None:
        """Stop each extension in reverse order; one failing does not keep the others running."""
        for item in reversed(self._items):
            _stop(item)


def _stop(item: Extension) -> None:
    try:
        item.stop()
    except Exception:
        logger.error("extension %s failed to stop", item.name, exc_info=True)
