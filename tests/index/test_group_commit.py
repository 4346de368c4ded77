"""Group commit: concurrent batches share one journal fsync, in order, all or none durable."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import index.journal
from index import EndpointRef, EventStore, StoreError
from index.journal import Journal, JournalRecord
from tests.index.conftest import sysmon
from tests.support.waiting import wait_for

EP = {"uuid": "u", "hostname": "h"}
MakeStore = Callable[..., EventStore]


def _ev(tag: str, size: int = 10, pad: str = "x") -> dict[str, object]:
    return {"Event": {"EventData": {"Tag": tag, "Pad": pad * size}}}


class _Fsync:
    """The journal's fsyncs of segments, counted (a directory's are passed through); ``plan``
    scripts the next calls: ``"gate"`` waits for ``release`` (then syncs), ``"fail"`` raises
    EIO."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.real = index.journal._fsync
        self.calls = 0
        self.plan: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        monkeypatch.setattr(index.journal, "_fsync", self)

    def __call__(self, fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            self.real(fd)
            return
        with self._lock:
            self.calls += 1
            step = self.plan.pop(0) if self.plan else ""
        if step == "gate":
            self.entered.set()
            assert self.release.wait(60)
        elif step == "fail":
            raise OSError(5, "Input/output error")
        self.real(fd)


def _start(threads: list[threading.Thread]) -> list[threading.Thread]:
    for t in threads:
        t.start()
    return threads


def _join(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.join(120)
        assert not t.is_alive()


def _run(threads: list[threading.Thread]) -> None:
    _join(_start(threads))


def test_concurrent_appends_share_fsyncs_in_journal_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed: list[JournalRecord] = []
    journal = Journal(tmp_path / "j", on_durable=lambda group: handed.extend(r for r, _ in group))
    fsync = _Fsync(monkeypatch)
    fsync.plan = ["gate"]  # the first fsync runs until the 15 other threads wrote a record
    acked: dict[
        int, list[tuple[int, int, int]]
    ] = {}  # thread → (seq, syncs when written, its sync)
    errors: list[BaseException] = []

    def appender(n: int) -> None:
        mine = acked.setdefault(n, [])
        try:
            for i in range(25):
                ticket = journal.write(
                    [_ev(f"t{n}-{i}")], endpoint=EP, batch_id=f"t{n}-{i}", rt_ns=1
                )
                written = journal.syncs  # at most one fsync runs now, without this record
                record = journal.commit(ticket)
                assert any(r is record for r in handed)  # handed over before acknowledged
                mine.append((record.first_seq, written, ticket.sync))
        except BaseException as ex:  # noqa: BLE001 - reported by the test thread
            errors.append(ex)

    threads = [threading.Thread(target=appender, args=(n,)) for n in range(16)]
    _start(threads[:1])
    assert fsync.entered.wait(60)
    _start(threads[1:])
    wait_for(lambda: journal.unsynced == 15, what="15 records behind the first fsync")
    fsync.release.set()
    _join(threads)
    assert not errors
    batches = 16 * 25
    records = list(journal.read())
    assert [r.first_seq for r in records] == list(range(1, batches + 1))
    assert [r.first_seq for r in handed] == list(range(1, batches + 1))  # journal order
    for n, mine in acked.items():  # each thread's batches in the order it sent them
        assert [s for s, _, _ in mine] == sorted(s for s, _, _ in mine)
        tags = [r.batch_id for r in records if r.batch_id and r.batch_id.startswith(f"t{n}-")]
        assert tags == [f"t{n}-{i}" for i in range(25)]
        # never more than one fsync cycle behind: the one running, then its own
        assert all(synced - written <= 2 for _, written, synced in mine)
    assert journal.syncs == fsync.calls < batches  # grouped: fewer fsyncs than batches
    journal.close()
    assert sum(r.count for r in Journal(tmp_path / "j").read()) == batches


def test_a_group_never_holds_more_than_group_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cap = 4096
    groups: list[list[int]] = []
    journal = Journal(
        tmp_path / "j",
        group_bytes=cap,
        on_durable=lambda group: groups.append([r.first_seq for r, _ in group]),
    )
    fsync = _Fsync(monkeypatch)
    fsync.plan = ["gate"]
    first = threading.Thread(
        target=journal.append,
        args=([_ev("first")],),
        kwargs={"endpoint": EP, "batch_id": None, "rt_ns": 1},
    )
    first.start()
    assert fsync.entered.wait(60)
    rest = [
        threading.Thread(
            target=journal.append,
            args=([_ev(f"r{i}", 1, os.urandom(600).hex())],),  # ~1.2 KB compressed
            kwargs={"endpoint": EP, "batch_id": f"r{i}", "rt_ns": 1},
        )
        for i in range(12)
    ]
    for t in rest:
        t.start()
    wait_for(lambda: journal.unsynced >= 2, what="records waiting for the next fsync")
    fsync.release.set()
    _join([first, *rest])
    assert sum(r.count for r in journal.read()) == 13
    sizes = _record_bytes(journal.segments()[-1])
    assert len(groups) > 2 and max(len(g) for g in groups) > 1  # grouped, and split
    assert all(sum(sizes[seq] for seq in group) <= cap for group in groups)


def _record_bytes(segment: Path) -> dict[int, int]:
    """First sequence number → bytes of each record of a segment (header included)."""
    header = index.journal._HEADER
    data, pos, out = segment.read_bytes(), 0, {}
    while pos < len(data):
        _, length, _, first_seq, _ = header.unpack_from(data, pos)
        out[first_seq] = header.size + length
        pos += header.size + length
    return out


def test_a_failed_fsync_refuses_its_whole_group_and_acknowledges_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed: list[int] = []
    journal = Journal(
        tmp_path / "j", on_durable=lambda group: handed.extend(r.first_seq for r, _ in group)
    )
    fsync = _Fsync(monkeypatch)
    fsync.plan = ["gate", "fail"]  # the first group waits, the second one fails
    results: dict[str, object] = {}

    def append(tag: str) -> None:
        try:
            results[tag] = journal.append([_ev(tag)], endpoint=EP, batch_id=tag, rt_ns=1).first_seq
        except StoreError as ex:
            results[tag] = ex

    first = threading.Thread(target=append, args=("first",))
    first.start()
    assert fsync.entered.wait(60)
    group = [threading.Thread(target=append, args=(f"g{i}",)) for i in range(8)]
    for t in group:
        t.start()
    wait_for(lambda: journal.unsynced == 8, what="8 records written behind the running fsync")
    size = journal.segments()[-1].stat().st_size
    fsync.release.set()
    _join([first, *group])
    assert results["first"] == 1
    refused = [results[f"g{i}"] for i in range(8)]
    assert all(isinstance(r, StoreError) and "journal write failed" in str(r) for r in refused)
    assert handed == [1]  # nothing of the failed group was handed over
    assert fsync.calls == 3  # the gated group, the failed one, the cut's own
    assert journal.segments()[-1].stat().st_size < size  # the group was cut off
    assert [r.batch_id for r in journal.read()] == ["first"]
    assert journal.append([_ev("after")], endpoint=EP, batch_id="after", rt_ns=1).first_seq == 2
    journal.close()
    assert [(r.first_seq, r.batch_id) for r in Journal(tmp_path / "j").read()] == [
        (1, "first"),
        (2, "after"),
    ]


def test_a_new_segment_starts_only_after_the_old_one_is_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "j", segment_bytes=2048)
    fsync = _Fsync(monkeypatch)
    errors: list[BaseException] = []

    def appender(n: int) -> None:
        try:
            for i in range(10):
                journal.append([_ev(f"{n}-{i}", 600)], endpoint=EP, batch_id=f"{n}-{i}", rt_ns=1)
        except BaseException as ex:  # noqa: BLE001 - reported by the test thread
            errors.append(ex)

    _run([threading.Thread(target=appender, args=(n,)) for n in range(8)])
    assert not errors and fsync.calls > 0
    assert len(journal.segments()) > 2
    journal.close()
    records = list(Journal(tmp_path / "j").read())
    assert [r.first_seq for r in records] == list(range(1, 81))


def _store_appender(
    store: EventStore, ep: EndpointRef, tags: list[str], out: dict[str, Any]
) -> Callable[[], None]:
    def run() -> None:
        for tag in tags:
            try:
                out[tag] = store.append(
                    [sysmon(f"C:\\{tag}.exe", tag)] * 3, endpoint=ep, batch_id=tag
                )
            except StoreError as ex:
                out[tag] = ex

    return run


def test_store_groups_batches_and_indexes_each_once(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store("s", fsync=True, index_process=False)
    fsync = _Fsync(monkeypatch)
    fsync.plan = ["gate"]
    out: dict[str, Any] = {}
    eps = [EndpointRef(f"ep-{n}", f"WS-{n}") for n in range(12)]
    threads = [
        threading.Thread(
            target=_store_appender(store, ep, [f"{ep.uuid}-{i}" for i in range(10)], out)
        )
        for ep in eps
    ]
    _start(threads[:1])
    assert fsync.entered.wait(60)
    _start(threads[1:])
    wait_for(lambda: store.journal.unsynced == 11, what="11 batches behind the first fsync")
    fsync.release.set()
    _join(threads)
    assert all(not isinstance(r, StoreError) and not r.duplicate for r in out.values())
    assert sorted(r.first_seq for r in out.values()) == list(range(1, 361, 3))
    syncs = store.stats()["journal_syncs"]
    assert isinstance(syncs, int) and 0 < syncs == fsync.calls < 120
    store.flush()
    assert store.sql("SELECT count(*), count(DISTINCT seq) FROM events").rows == [(360, 360)]
    for ep in eps:  # every batch id is remembered
        assert store.append([sysmon("x", "y")], endpoint=ep, batch_id=f"{ep.uuid}-3").duplicate


def test_a_batch_sent_again_while_in_flight_is_stored_once(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store("s", fsync=True, index_process=False)
    ep = EndpointRef("ep-dup", "WS-DUP")
    store.append([sysmon("a", "b")], endpoint=ep, batch_id="warm")  # segment open
    fsync = _Fsync(monkeypatch)
    fsync.plan = ["gate"]
    out: dict[str, Any] = {}
    blocker = threading.Thread(target=_store_appender(store, ep, ["blocker"], out))
    blocker.start()
    assert fsync.entered.wait(60)
    results: list[Any] = []

    def send() -> None:
        results.append(
            store.append([sysmon("C:\\same.exe", "s")] * 4, endpoint=ep, batch_id="same")
        )

    twins = [threading.Thread(target=send) for _ in range(2)]
    for t in twins:
        t.start()
    wait_for(lambda: store.journal.unsynced == 1, what="the batch written once")
    fsync.release.set()
    _join([blocker, *twins])
    assert sorted(r.duplicate for r in results) == [False, True]
    assert results[0].first_seq == results[1].first_seq
    assert [r.batch_id for r in store.journal.read()] == ["warm", "blocker", "same"]


def test_a_failed_group_in_the_store_leaves_nothing_and_retries_are_stored(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store("s", fsync=True, index_process=False)
    ep = EndpointRef("ep-fail", "WS-FAIL")
    store.append([sysmon("a", "b")], endpoint=ep, batch_id="warm")
    fsync = _Fsync(monkeypatch)
    fsync.plan = ["gate", "fail"]
    out: dict[str, Any] = {}
    blocker = threading.Thread(target=_store_appender(store, ep, ["blocker"], out))
    blocker.start()
    assert fsync.entered.wait(60)
    group = [
        threading.Thread(target=_store_appender(store, EndpointRef(f"ep-{i}"), [f"g{i}"], out))
        for i in range(6)
    ]
    for t in group:
        t.start()
    wait_for(lambda: store.journal.unsynced == 6, what="6 batches behind the running fsync")
    fsync.release.set()
    _join([blocker, *group])
    assert not isinstance(out["blocker"], StoreError)
    assert all(isinstance(out[f"g{i}"], StoreError) for i in range(6))
    store.flush()
    assert store.count() == 4  # warm (1) + blocker (3)
    for i in range(6):  # refused, so not "duplicates": the retries are stored
        again = store.append([sysmon("r", "r")], endpoint=EndpointRef(f"ep-{i}"), batch_id=f"g{i}")
        assert not again.duplicate
    store.flush()
    assert store.count() == 10
    assert store.sql("SELECT count(*), count(DISTINCT seq) FROM events").rows == [(10, 10)]
