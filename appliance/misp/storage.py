"""Where the MISP sync keeps its state: files, memory, or PostgreSQL (pgstore.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .settings import SettingsStore
from .state import (
    FileQueue,
    FileStateStore,
    ItemQueue,
    MemoryQueue,
    MemoryStateStore,
    StateStore,
)

__all__ = ["MispStorage"]


@dataclass(frozen=True, slots=True)
class MispStorage:
    """Where the MISP sync keeps its state.

    Documents, two queues, and the settings file.
    """

    state: StateStore
    sightings: ItemQueue
    reports: ItemQueue
    settings: SettingsStore | None = None
    shared: bool = False  # cluster mode (pgstore.py): every front-end's queues, one drains
    lookups: ItemQueue | None = None  # shared: value-lookup candidates handed to the leader

    @classmethod
    def open(cls, root: Path) -> MispStorage:
        """Files under `root` (the manager passes `<data>/misp`)."""
        root = Path(root)
        return cls(
            state=FileStateStore(root / "state"),
            sightings=FileQueue(root / "sightings"),
            reports=FileQueue(root / "reports"),
            settings=SettingsStore(root),
        )

    @classmethod
    def memory(cls) -> MispStorage:
        return cls(state=MemoryStateStore(), sightings=MemoryQueue(), reports=MemoryQueue())
