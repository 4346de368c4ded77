"""Durable state of the MISP sync: small JSON documents and on-disk queues under `<data>/misp/`.

Two seams, each with a file implementation and an in-memory one next to it:

* `StateStore`: named JSON documents (IoC set and sync cursor, sighting de-duplication cache, pushed
  report ledger, known daily events). Writes are atomic (temporary file, fsync, rename).
* `ItemQueue`: an ordered queue of JSON items that survives restarts (pending sighting batches,
  pending
  reports). An item is a file until `remove()`; a crash leaves it to be retried at the next start.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "FileQueue",
    "FileStateStore",
    "ItemQueue",
    "MemoryQueue",
    "MemoryStateStore",
    "StateStore",
    "atomic_write",
]


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StateStore(Protocol):
    """Named JSON documents."""

    def load(self, name: str) -> Any: ...

    def save(self, name: str, value: Any) -> None: ...


class ItemQueue(Protocol):
    """A durable FIFO of JSON items addressed by id."""

    def put(self, item: Any) -> str: ...

    def items(self) -> Iterator[tuple[str, Any]]: ...

    def remove(self, item_id: str) -> None: ...

    def __len__(self) -> int: ...


class MemoryStateStore:
    """StateStore in memory (tests).

    A restart is simulated by sharing the instance.
    """

    def __init__(self) -> None:
        self._docs: dict[str, str] = {}

    def load(self, name: str) -> Any:
        text = self._docs.get(name)
        return None if text is None else json.loads(text)

    def save(self, name: str, value: Any) -> None:
        self._docs[name] = json.dumps(value)


class FileStateStore:
    """StateStore as `<root>/<name>.json` files."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def load(self, name: str) -> Any:
        path = self.root / f"{name}.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def save(self, name: str, value: Any) -> None:
        atomic_write(
            self.root / f"{name}.json", json.dumps(value, separators=(",", ":")).encode("utf-8")
        )


class MemoryQueue:
    """ItemQueue in memory."""

    def __init__(self) -> None:
        self._items: dict[str, str] = {}
        self._seq = 0
        self._lock = threading.Lock()

    def put(self, item: Any) -> str:
        with self._lock:
            self._seq += 1
            item_id = f"{self._seq:016d}"
            self._items[item_id] = json.dumps(item)
            return item_id

    def items(self) -> Iterator[tuple[str, Any]]:
        with self._lock:
            snapshot = sorted(self._items.items())
        for item_id, text in snapshot:
            yield item_id, json.loads(text)

    def remove(self, item_id: str) -> None:
        with self._lock:
            self._items.pop(item_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class FileQueue:
    """ItemQueue as one `<seq>.json` file per item in a directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        names = [p.stem for p in self.root.glob("*.json") if p.stem.isdigit()]
        self._seq = max((int(n) for n in names), default=0)
        for tmp in self.root.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)  # a crash mid-write: the item was never acknowledged

    def put(self, item: Any) -> str:
        with self._lock:
            self._seq += 1
            item_id = f"{self._seq:016d}"
        atomic_write(self.root / f"{item_id}.json", json.dumps(item).encode("utf-8"))
        return item_id

    def items(self) -> Iterator[tuple[str, Any]]:
        for path in sorted(self.root.glob("*.json")):
            try:
                yield path.stem, json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                continue

    def remove(self, item_id: str) -> None:
        (self.root / f"{item_id}.json").unlink(missing_ok=True)

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*.json"))
