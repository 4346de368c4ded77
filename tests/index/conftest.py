"""Fixtures for the event store tests: the real corpus events and stores under tmp_path."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from index import EndpointRef, EventStore

ENDPOINTS = [
    EndpointRef(f"5a92baeb-9384-47d3-92b4-a0db6f9b8c{i:02d}", f"HOST-{i}", f"10.0.0.{i}", "lab")
    for i in range(4)
]


def endpoint_for(file: str) -> EndpointRef:
    """Deterministic endpoint of a corpus file (the files are the 'machines')."""
    return ENDPOINTS[zlib.crc32(file.encode()) % len(ENDPOINTS)]


@pytest.fixture(scope="session")
def corpus(shared_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(file, event)`` pairs from ../shared/gene-oracle/corpus-events.jsonl.gz."""
    path = shared_dir / "gene-oracle" / "corpus-events.jsonl.gz"
    with gzip.open(path) as fh:
        return [(d["file"], d["event"]) for d in map(orjson.loads, fh)]


def ingest(store: EventStore, corpus: list[tuple[str, dict[str, Any]]]) -> int:
    """Append the corpus grouped by file (one batch per file), return the event count."""
    by_file: dict[str, list[dict[str, Any]]] = {}
    for file, event in corpus:
        by_file.setdefault(file, []).append(event)
    for i, (file, events) in enumerate(sorted(by_file.items())):
        store.append(events, endpoint=endpoint_for(file), batch_id=f"b{i}")
    store.flush()
    return len(corpus)


@pytest.fixture(scope="session")
def corpus_store(
    tmp_path_factory: pytest.TempPathFactory, corpus: list[tuple[str, dict[str, Any]]]
) -> Iterator[EventStore]:
    """One store holding the whole corpus (read-only tests share it), indexed as the manager
    does: Tantivy written by the writer child process."""
    with EventStore(tmp_path_factory.mktemp("corpus-store"), fsync=False) as store:
        ingest(store, corpus)
        yield store


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[Callable[..., EventStore]]:
    """Factory of stores under tmp_path; every store is closed at teardown.

    Its stores write Tantivy in this process (``index_process=False``, opted in for speed)
    unless a test asks for the manager's writer child (``index_process=True``).
    """
    opened: list[EventStore] = []

    def make(sub: str = "store", **kwargs: Any) -> EventStore:
        kwargs.setdefault("fsync", False)
        kwargs.setdefault("index_process", False)
        store = EventStore(tmp_path / sub, **kwargs)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def sysmon(
    image: str,
    cmd: str,
    *,
    when: str = "2024-03-01T10:00:00.1234567Z",
    extra: dict[str, Any] | None = None,
    event_id: Any = "1",
) -> dict[str, Any]:
    """A small Sysmon process-creation event."""
    data = {"Image": image, "CommandLine": cmd, **(extra or {})}
    return {
        "Event": {
            "System": {
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "Computer": "WS-1",
                "EventID": event_id,
                "TimeCreated": {"SystemTime": when},
            },
            "EventData": data,
        }
    }
