"""The Tantivy writer sinks: in this process, and in the writer child process the manager uses."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from index import EndpointRef, EventStore, IndexHealth, IndexState, StoreError
from index.schema import with_raw
from index.writer_protocol import FROZEN_ARG, child_command
from tests.index.conftest import sysmon
from tests.support.procs import exited, pending_signals
from tests.support.waiting import wait_for

EP = EndpointRef("sink-1", "WS-SINK")
MakeStore = Callable[..., EventStore]


def _fail_call(
    monkeypatch: pytest.MonkeyPatch, owner: object, name: str, nth: int, message: str
) -> None:
    """Make the ``nth`` call of ``owner.name`` raise ``StoreError(message)``."""
    real = getattr(owner, name)
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == nth:
            raise StoreError(message)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, flaky)


def _fill(store: EventStore, batches: int, size: int = 10, start: int = 0) -> None:
    for b in range(start, start + batches):
        store.append(
            [sysmon(f"C:\\b{b}\\e{i}.exe", f"run b{b} e{i}") for i in range(size)],
            endpoint=EP,
            batch_id=f"batch-{b}",
        )


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
    _fill(store, 1, start=5)
    assert store.merge_segments(wait=False) >= 1  # the periodic pass's: commits, no wait
    assert store.count() == 60
    store.apply_retention(max_age=None, max_bytes=None)
    assert store.reindex() == 60
    assert store.count() == 60
    assert store.sql("SELECT count(*), count(DISTINCT seq) FROM events").rows == [(60, 60)]


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


def test_killed_writer_process_is_replaced_and_the_journal_replayed(
    make_store: MakeStore,
) -> None:
    store = make_store("s", index_process=True)
    _fill(store, 2)
    store.flush()
    pid = store.stats()["writer_pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while store.health().ok and time.monotonic() < deadline:
        time.sleep(0.05)
    health = store.health()
    assert health.state is IndexState.GAP and health.writer_pid == pid
    assert "index writer process exited" in str(health.reason)
    assert store.stats()["indexer_error"] == health.reason
    _fill(store, 2, start=2)  # still durable: the journal takes it
    store.flush()  # repairs: a new writer process, the journal after its committed max
    assert store.stats()["writer_pid"] not in (None, pid)
    assert store.count() == 40
    assert store.search("Image:C:\\b3\\e9.exe").total == 1
    assert store.sql("SELECT count(*), count(DISTINCT seq) FROM events").rows == [(40, 40)]
    assert store.health() == IndexHealth(IndexState.OK, None, 0, store.stats()["writer_pid"])
    store.close()
    reopened = make_store("s", index_process=True)
    assert reopened.count() == 40


@pytest.mark.parametrize("process", [False, True], ids=["thread", "process"])
def test_flush_makes_every_appended_event_searchable(make_store: MakeStore, process: bool) -> None:
    """A timed commit in flight when flush() starts must not let flush return early."""
    store = make_store(index_process=process, commit_interval=0.0)
    for n in range(1, 31):
        store.append([sysmon(f"C:\\f\\{n}.exe", "x")], endpoint=EP, batch_id=f"f{n}")
        time.sleep(0.002 * (n % 4))  # pacing (the behaviour): vary where the timed commit is
        store.flush()
        assert store.count() == n


def test_a_failed_group_is_replayed_not_skipped(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store("s", index_process=True)
    _fail_call(monkeypatch, store.tables, "insert", 1, "DuckDB insert failed: disk full")
    _fill(store, 1)
    _fill(store, 2, start=1)  # a later group must not jump over the failed one
    store.flush()
    assert store.count() == 30
    assert store.sql("SELECT count(*), count(DISTINCT seq) FROM events").rows == [(30, 30)]
    assert store.health().ok
    assert "disk full" in caplog.text and "event index repaired" in caplog.text


def test_writer_process_outlives_stop_signals_until_the_manager_closes_it(
    make_store: MakeStore,
) -> None:
    store = make_store("s", index_process=True)
    pid = store.stats()["writer_pid"]
    assert os.getsid(pid) != os.getsid(0)  # a terminal's Ctrl-C does not reach it
    for sig in (signal.SIGINT, signal.SIGTERM):
        os.kill(pid, sig)
    wait_for(lambda: not pending_signals(pid), 30, "SIGINT/SIGTERM delivered to the writer")
    assert not exited(pid)
    _fill(store, 1)
    store.flush()
    assert store.stats()["writer_pid"] == pid and store.count() == 10
    store.close()
    with pytest.raises(ProcessLookupError):
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.05)


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
    root = Path(__file__).resolve().parents[2]
    fake = tmp_path / "heron-manager"
    fake.write_text(f'#!/bin/sh\ncd {root}\nexec {sys.executable} -m appliance "$@"\n')
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(fake))
    assert child_command(tmp_path / "index", 1, 1)[:2] == [str(fake), FROZEN_ARG]
    store = make_store("s", index_process=True)
    _fill(store, 1)
    store.flush()
    assert store.search("Image:C:\\b0\\e9.exe").total == 1


def test_with_raw_adds_the_stored_event_as_base64() -> None:
    assert with_raw(b'{"seq":1}', b'{"Event":{}}') == '{"seq":1,"raw":"eyJFdmVudCI6e319"}'


def test_only_short_hashes_values_are_cached() -> None:
    from index import schema

    short = "SHA1=" + "a" * 40
    long = short + "," + "x" * 600
    assert schema._hashes_of(short) == (("sha1", ["a" * 40]),)
    assert schema._hashes_of(long) == (("sha1", ["a" * 40]),)
    assert short in schema._HASHES and long not in schema._HASHES


def test_writer_process_death_with_uncommitted_documents_does_not_stop_ingest(
    make_store: MakeStore,
) -> None:
    store = make_store("s", index_process=True, commit_interval=0.3)
    store.writer.defer_repair(3)  # the commit tick meets the dead child
    _fill(store, 1)
    deadline = time.monotonic() + 10
    while store.writer.stats().tantivy_max < 10 and time.monotonic() < deadline:
        time.sleep(0.01)  # handed to the writer process, not yet committed
    pid = store.stats()["writer_pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: exited(pid), 30, "the killed writer process to exit")
    wait_for(lambda: not store.health().ok, 30, "a commit tick to meet the dead child")
    done = threading.Event()

    def ingest() -> None:
        _fill(store, 40, start=1)
        done.set()

    threading.Thread(target=ingest, daemon=True).start()
    assert done.wait(60), "appends hung after the writer process died"
    store.flush()
    assert store.health().ok
    assert store.count() == 410
    assert store.sql("SELECT count(*), count(DISTINCT seq) FROM events").rows == [(410, 410)]


def test_a_failed_reindex_is_finished_by_the_repair(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store("s", index_process=True)
    for b in range(200):
        store.append([sysmon(f"C:\\r\\{b}.exe", "x")], endpoint=EP, batch_id=f"r{b}")
    store.flush()
    _fail_call(monkeypatch, store.tables, "insert", 2, "DuckDB insert failed: disk full")
    with pytest.raises(StoreError, match="disk full"):
        store.reindex()
    store.append([sysmon("C:\\r\\late.exe", "x")], endpoint=EP, batch_id="late")
    store.flush()
    assert store.count() == 201
    assert store.sql("SELECT count(*), count(DISTINCT seq) FROM events").rows == [(201, 201)]
    store.close()
    assert make_store("s", index_process=True).count() == 201


def test_a_repair_after_retention_does_not_bring_deleted_events_back(
    make_store: MakeStore,
) -> None:
    store = make_store("s", index_process=True)
    _fill(store, 3)
    store.flush()
    store.writer.call(lambda: store.writer.delete_below(store.journal.next_seq)).result()
    pid = store.stats()["writer_pid"]
    os.kill(pid, signal.SIGKILL)  # before the store moved min_seq
    wait_for(lambda: exited(pid), 30, "the killed writer process to exit")
    store.flush()  # repair: new writer, replay from the floor, not from the empty index
    assert store.count() == 0


@pytest.mark.parametrize("process", [False, True], ids=["thread", "process"])
def test_a_negative_event_id_does_not_stop_indexing(make_store: MakeStore, process: bool) -> None:
    store = make_store(index_process=process)
    store.append(
        [sysmon("C:\\n\\a.exe", "x", event_id="-5"), sysmon("C:\\n\\b.exe", "y")],
        endpoint=EP,
        batch_id="neg",
    )
    store.flush()
    assert store.count() == 2 and store.health().ok
    assert store.search("Image:C:\\n\\a.exe").total == 1
    assert store.sql("SELECT event_id FROM events ORDER BY seq").rows == [(-5,), (1,)]


def test_a_reindex_failing_after_its_deletes_is_finished_by_the_repair(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store("s", index_process=True)
    _fill(store, 2)
    store.flush()
    # the index is emptied already; the tables' deletes fail
    _fail_call(monkeypatch, store.tables, "execute_writes", 1, "DuckDB write failed: simulated")
    with pytest.raises(StoreError, match="simulated"):
        store.reindex()
    _fill(store, 1, start=2)
    store.flush()
    assert store.count() == 30
    assert store.sql("SELECT count(*), count(DISTINCT seq) FROM events").rows == [(30, 30)]


def _set_floor(root: Path, min_seq: int) -> None:
    """Write the retention floor as a pass does before its deletes (a crash right after)."""
    path = root / "store.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**state, "min_seq": min_seq}))


def test_a_retention_pass_interrupted_by_a_crash_is_finished_at_open(
    make_store: MakeStore, tmp_path: Path
) -> None:
    store = make_store("s", index_process=True)
    _fill(store, 3)
    store.flush()
    store.close()
    _set_floor(tmp_path / "s", 11)  # what apply_retention saves before it deletes anything
    again = make_store("s", index_process=True)
    again.flush()
    assert again.count() == 20
    assert again.sql("SELECT min(seq), count(*) FROM events").rows == [(11, 20)]


def test_no_commit_timer_spins_while_the_writer_waits_to_repair(make_store: MakeStore) -> None:
    writer = make_store(index_process=False).writer
    writer.defer_repair(5)
    writer.fail("simulated")  # in the gap, with a commit due
    writer.mark_dirty()
    timeout = writer.idle_timeout()
    assert timeout is not None and timeout > 4


def test_a_failed_retention_delete_is_retried_by_the_next_pass(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    clock = {"now": 1_000_000.0}
    store = make_store("s", index_process=True, clock=lambda: clock["now"])
    _fill(store, 2)
    clock["now"] += 3600
    _fill(store, 1, start=2)
    store.flush()
    real = store.writer.sink.delete_below
    monkeypatch.setattr(
        store.writer.sink,
        "delete_below",
        lambda seq: (_ for _ in ()).throw(StoreError("simulated delete failure")),
    )
    with pytest.raises(StoreError, match="simulated"):
        store.apply_retention(max_age=timedelta(minutes=30))
    monkeypatch.setattr(store.writer.sink, "delete_below", real)
    store.apply_retention(max_age=timedelta(minutes=30))  # same cutoff: must still delete
    assert store.count() == 10
    assert store.sql("SELECT count(*), min(seq) FROM events").rows == [(10, 21)]
    assert store.sql("SELECT count(*) FROM batches").rows == [(1,)]


def test_a_reindex_failing_between_its_deletes_leaves_no_duplicate_batch_rows(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store("s", index_process=True)
    _fill(store, 3)
    store.flush()
    real = store.tables._con.execute
    state = {"armed": True}

    def flaky(sql: str, *args: object) -> object:
        if state["armed"] and sql.startswith("DELETE FROM batches"):
            state["armed"] = False
            raise duckdb.IOException("simulated")
        return real(sql, *args)

    monkeypatch.setattr(store.tables, "_con", _Proxy(store.tables._con, flaky))
    with pytest.raises(StoreError, match="simulated"):
        store.reindex()
    monkeypatch.undo()
    store.flush()
    assert store.sql("SELECT count(*), count(DISTINCT seq) FROM events").rows == [(30, 30)]
    assert store.sql("SELECT count(*), count(DISTINCT batch_id) FROM batches").rows == [(3, 3)]


class _Proxy:
    """A DuckDB connection whose ``execute`` is replaced (the real one is read-only)."""

    def __init__(self, con: object, execute: Callable[..., object]) -> None:
        self._con, self.execute = con, execute

    def __getattr__(self, name: str) -> object:
        return getattr(self._con, name)


def test_a_failed_journal_write_leaves_nothing_behind(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import index.journal

    store = make_store("s", fsync=True, index_process=False)
    real = index.journal._fsync
    state = {"fail": False}

    def fsync(fd: int) -> None:
        if state["fail"]:
            state["fail"] = False
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(index.journal, "_fsync", fsync)
    _fill(store, 1)
    state["fail"] = True
    with pytest.raises(StoreError, match="journal write failed"):
        store.append([sysmon("C:\\unacked.exe", "x")] * 3, endpoint=EP, batch_id="unacked")
    acked = store.append([sysmon("C:\\acked.exe", "x")] * 5, endpoint=EP, batch_id="acked")
    assert acked.first_seq == 11
    assert [(r.first_seq, r.batch_id) for r in store.journal.read()] == [
        (1, "batch-0"),
        (11, "acked"),
    ]
    assert store.reindex() == 15
    assert store.search("Image:C:\\acked.exe").total == 5
    assert store.search("Image:C:\\unacked.exe").total == 0
    # the refused batch is not a "duplicate": its retry is stored
    assert not store.append(
        [sysmon("C:\\unacked.exe", "x")] * 3, endpoint=EP, batch_id="unacked"
    ).duplicate


def test_a_rebuilt_index_does_not_bring_back_events_below_the_retention_floor(
    make_store: MakeStore, tmp_path: Path
) -> None:
    import shutil

    store = make_store("s", index_process=False)
    _fill(store, 3)
    store.flush()
    store.close()
    _set_floor(tmp_path / "s", 15)  # a size cap cut inside the second record
    make_store("s", index_process=False).close()  # the open finishes the pass
    shutil.rmtree(tmp_path / "s" / "index")  # e.g. a schema upgrade rebuilds it
    again = make_store("s", index_process=False)
    again.flush()
    assert again.count() == 16
    assert again.sql("SELECT min(seq), count(*) FROM events").rows == [(15, 16)]


def test_a_writer_call_racing_close_fails_instead_of_hanging(make_store: MakeStore) -> None:
    from index import StoreClosedError

    store = make_store(index_process=False)
    store.close()
    with pytest.raises(StoreClosedError):
        store.writer.call(lambda: 1).result(5)
