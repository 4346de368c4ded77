"""The Tantivy writer sinks: in this process, and in the writer child process the manager uses."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from index import EndpointRef, EventStore, StoreError
from index.schema import with_raw
from index.writer_child import FROZEN_ARG
from tests.index.conftest import sysmon

EP = EndpointRef("sink-1", "WS-SINK")
MakeStore = Callable[..., EventStore]


def _fill(store: EventStore, batches: int, size: int = 10, start: int = 0) -> None:
    for b in range(start, start + batches):
        store.append([sysmon(f"C:\\b{b}\\e{i}.exe", f"run b{b} e{i}") for i in range(size)],
                     endpoint=EP, batch_id=f"batch-{b}")


@pytest.mark.parametrize("process", [False, True], ids=["thread", "process"])
def test_store_lifecycle_is_the_same_in_both_sinks(make_store: MakeStore, process: bool) -> None:
    store = make_store(index_process=process)
    assert (store.stats()["writer_pid"] == os.getpid()) is not process
    _fill(store, 5)
    store.flush()
    assert store.count() == 50
    assert store.search("Image:C:\\b3\\e7.exe").total == 1
    page = store.search('CommandLine:"run b2 e4"')
    assert page.total == 1 and page.events[0]["Event"]["EventData"]["CommandLine"] == "run b2 e4"
    assert store.merge_segments() >= 1
    store.apply_retention(max_age=None, max_bytes=None)
    assert store.reindex() == 50
    assert store.count() == 50
    assert store.sql("SELECT count(*), count(DISTINCT seq) FROM events").rows == [(50, 50)]


def test_process_sink_survives_reopen_and_dedups(make_store: MakeStore, tmp_path: Path) -> None:
    store = make_store("s", index_process=True)
    _fill(store, 3)
    store.close()
    again = make_store("s", index_process=True)
    assert again.append([sysmon("x", "y")], endpoint=EP, batch_id="batch-1").duplicate
    _fill(again, 2, start=3)
    again.flush()
    assert again.count() == 50
    assert again.search("Image:C:\\b4\\e0.exe").total == 1


def test_killed_writer_process_is_reported_and_nothing_acknowledged_is_lost(
    make_store: MakeStore,
) -> None:
    store = make_store("s", index_process=True)
    _fill(store, 2)
    store.flush()
    pid = store.stats()["writer_pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while store.stats()["indexer_error"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "index writer process exited" in str(store.stats()["indexer_error"])
    assert store.health()["backlog"] == 0
    _fill(store, 2, start=2)  # still durable: the journal takes it
    deadline = time.monotonic() + 10
    while store.health()["backlog"] < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.health()["backlog"] == 20  # journaled, not indexed
    assert "index writer process exited" in store.health()["error"]
    with pytest.raises(StoreError, match="index writer process"):
        store.flush()
    assert store.count() == 20  # what was committed stays searchable
    store.close()
    reopened = make_store("s", index_process=True)  # the journal replays what was not indexed
    reopened.flush()
    assert reopened.count() == 40
    assert reopened.sql("SELECT count(*), count(DISTINCT seq) FROM events").rows == [(40, 40)]


def test_writer_process_start_failure_is_a_clear_error(make_store: MakeStore) -> None:
    with pytest.raises(StoreError, match="cannot open the Tantivy writer"):
        make_store("s", index_process=True, heap_size=1000)  # below Tantivy's minimum heap
    store = make_store("s", index_process=True)  # nothing held: the store opens again
    _fill(store, 1)
    store.flush()
    assert store.count() == 10


def test_frozen_manager_starts_the_writer_through_its_cli(
    make_store: MakeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frozen manager has no ``python -c``: it re-runs itself with FROZEN_ARG."""
    import appliance.cli

    assert appliance.cli.FROZEN_INDEX_WRITER == FROZEN_ARG
    root = Path(__file__).resolve().parents[2]
    fake = tmp_path / "heron-manager"
    fake.write_text(f"#!/bin/sh\ncd {root}\nexec {sys.executable} -m appliance \"$@\"\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(fake))
    store = make_store("s", index_process=True)
    _fill(store, 1)
    store.flush()
    assert store.search("Image:C:\\b0\\e9.exe").total == 1


def test_with_raw_adds_the_stored_event_as_base64() -> None:
    assert with_raw(b'{"seq":1}', b'{"Event":{}}') == '{"seq":1,"raw":"eyJFdmVudCI6e319"}'
