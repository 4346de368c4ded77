"""The index queue is bounded by estimated memory (`queue_bytes`), not a count of batches."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from index import EventStore
from index.writer import _queued_cost
from tests.index.conftest import ENDPOINTS

MakeStore = Callable[..., EventStore]


def _events(n: int, size: int) -> list[dict[str, Any]]:
    return [
        {
            "Event": {
                "System": {"Channel": "x", "EventID": 1, "Computer": "H"},
                "EventData": {"Blob": "b" * size, "N": i},
            }
        }
        for i in range(n)
    ]


def test_appends_wait_while_the_queue_holds_its_byte_budget(make_store: MakeStore) -> None:
    budget = 2 * 1024 * 1024
    store = make_store(queue_bytes=budget)
    indexer = store.writer
    release = threading.Event()
    indexer.call(lambda: release.wait(120))  # the writer is busy: nothing leaves the queue
    appended = [0]

    def append_all() -> None:
        for b in range(40):  # 40 batches of ~400 KiB JSON: ~64 MiB estimated if all queued
            store.append(_events(20, 20_000), endpoint=ENDPOINTS[0], batch_id=f"q{b}")
            appended[0] += 1

    writer = threading.Thread(target=append_all)
    writer.start()
    deadline = time.monotonic() + 120
    while not (appended[0] and indexer.queued_bytes * (1 + 1 / appended[0]) > budget):
        assert time.monotonic() < deadline, "the queue never filled"
        time.sleep(0.01)
    assert writer.is_alive() and appended[0] < 40  # the next append waits for room
    assert indexer.queued_bytes <= budget
    release.set()
    writer.join(120)
    assert appended[0] == 40
    store.flush()
    assert indexer.queued_bytes == 0
    assert store.count("") == 800


def test_oversized_record_passes_alone_and_cost_estimate() -> None:
    from index.journal import JournalRecord

    rec = JournalRecord(1, 2, {}, None, 0, [{}, {}])
    assert _queued_cost(rec, [b"x" * 100, b"y" * 50]) == 4 * 150 + 128
    assert _queued_cost(rec, None) == 2 * 4096
