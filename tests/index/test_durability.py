"""Durability: journal recovery, idempotent replay, rebuilds, and a kill -9 during ingest."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from index import EndpointRef, EventStore
from index.journal import Journal
from tests.index.conftest import sysmon
from tests.support.procs import exited
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
EP = EndpointRef("dur-1", "WS-1")
MakeStore = Callable[..., EventStore]


def _fill(store: EventStore, batches: int, size: int = 10) -> None:
    for b in range(batches):
        store.append(
            [sysmon(f"C:\\b{b}\\e{i}.exe", f"run b{b} e{i}") for i in range(size)],
            endpoint=EP,
            batch_id=f"batch-{b}",
        )


def test_reopen_keeps_events_and_dedup_keys(tmp_path: Path) -> None:
    with EventStore(tmp_path / "s", fsync=False) as store:
        _fill(store, 5)
    with EventStore(tmp_path / "s", fsync=False) as store:
        assert store.count() == 50
        assert store.append([sysmon("x", "y")], endpoint=EP, batch_id="batch-3").duplicate
        assert store.append([sysmon("x", "y")], endpoint=EP, batch_id="batch-9").first_seq == 51


def test_torn_journal_tail_is_truncated(tmp_path: Path) -> None:
    with EventStore(tmp_path / "s", fsync=False) as store:
        _fill(store, 3)
    segment = sorted((tmp_path / "s" / "journal").glob("*.wal"))[-1]
    with segment.open("ab") as fh:
        fh.write(b"HRJ1 torn record that never got its fsync")
    journal = Journal(tmp_path / "s" / "journal")
    assert journal.next_seq == 31
    assert sum(r.count for r in journal.read()) == 30
    journal.close()
    with EventStore(tmp_path / "s", fsync=False) as store:
        assert store.count() == 30
        assert store.append([sysmon("x", "y")], endpoint=EP).first_seq == 31


@pytest.mark.parametrize("lost", ["index", "events.duckdb"])
def test_lost_backend_is_rebuilt_from_journal(tmp_path: Path, lost: str) -> None:
    with EventStore(tmp_path / "s", fsync=False) as store:
        _fill(store, 4)
    target = tmp_path / "s" / lost
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with EventStore(tmp_path / "s", fsync=False) as store:
        store.flush()
        assert store.count() == 40
        assert store.sql("SELECT count(*), count(DISTINCT seq) FROM events").rows == [(40, 40)]
        assert store.append([sysmon("x", "y")], endpoint=EP, batch_id="batch-2").duplicate


def test_replay_is_idempotent_when_backends_disagree(tmp_path: Path) -> None:
    with EventStore(tmp_path / "s", fsync=False) as store:
        _fill(store, 4)
        store.flush()
        # Simulate a crash after the Tantivy commit but before the DuckDB insert (on the
        # writer thread: the DuckDB writer connection belongs to it).
        delete = store.writer.call(
            lambda: store.tables.execute_write("DELETE FROM events WHERE seq > 25")
        )
        delete.result()
    with EventStore(tmp_path / "s", fsync=False) as store:
        store.flush()
        assert store.count() == 40
        assert store.sql("SELECT count(*), count(DISTINCT seq), max(seq) FROM events").rows == [
            (40, 40, 40)
        ]


def test_reindex_rebuilds_everything(make_store: MakeStore) -> None:
    store = make_store()
    _fill(store, 3)
    assert store.reindex() == 30
    assert store.count() == 30
    assert store.search("Image:C:\\b1\\e3.exe").total == 1
    assert store.sql("SELECT count(*) FROM events").rows == [(30,)]


@pytest.mark.parametrize("mode", ["thread", "process", "concurrent"])
def test_kill_9_during_ingest_loses_no_acknowledged_event(tmp_path: Path, mode: str) -> None:
    """``concurrent``: 8 threads append at once, so batches share fsyncs (group commit)."""
    root = tmp_path / "crash"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    options = ["threads=8"] if mode == "concurrent" else [mode]
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.index.crash_child", str(root), "0", *options],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    acked: list[tuple[int, int, int]] = []
    assert child.stdout is not None
    writer_pid = int(child.stdout.readline().split()[1]) if mode == "process" else None
    deadline = time.monotonic() + 60
    try:
        while len(acked) < 60 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            _, batch, first, count = line.split()
            acked.append((int(batch), int(first), int(count)))
    finally:
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate(timeout=30)
    acked += [tuple(map(int, line.split()[1:])) for line in rest.splitlines() if line.strip()]
    assert child.returncode == -signal.SIGKILL
    assert len(acked) >= 20, "child acknowledged too few batches before the kill"
    if writer_pid is not None:  # the orphaned index writer sees end of file and exits
        assert _gone(writer_pid, within=10.0), "index writer process outlived the manager"
    with EventStore(root, index_process=mode == "process") as store:
        store.flush()
        total = store.count()
        journaled = store.journal.next_seq - 1
        assert total == journaled  # every journaled event indexed exactly once
        assert store.sql("SELECT count(*), count(DISTINCT seq) FROM events").rows == [
            (journaled, journaled)
        ]
        markers = {
            r[0]
            for r in store.sql(
                "SELECT regexp_extract(command_line, 'marker (b\\d+e\\d+)', 1) FROM events",
                max_rows=1_000_000,
            ).rows
        }
        for batch, _first, count in acked:
            for i in range(count):
                assert f"b{batch}e{i}" in markers
        probe_batch = acked[len(acked) // 2][0]
        assert store.search(f"Marker:b{probe_batch}e7").total == 1
        assert store.search(f'CommandLine:"marker b{probe_batch}e7"').total == 1
        # The child's batches are deduplicated after the restart.
        assert store.append(
            [sysmon("a", "b")],
            endpoint=EndpointRef("crash-endpoint"),
            batch_id=f"batch-{acked[-1][0]}",
        ).duplicate


def _gone(pid: int, within: float) -> bool:
    """Exited (a zombie counts: its parent, killed, can no longer reap it) within `within` s."""
    try:
        return bool(wait_for(lambda: exited(pid), within, f"process {pid} to exit"))
    except AssertionError:
        return False


def test_second_owner_is_refused(tmp_path: Path) -> None:
    from index import StoreError

    with EventStore(tmp_path / "s", fsync=False) as store:
        code = (
            "import sys; from index import EventStore, StoreError\n"
            "try:\n    EventStore(sys.argv[1])\nexcept StoreError as ex:\n"
            "    print('refused:', ex); sys.exit(3)\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "s")],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 3, proc.stderr
        assert "in use by another process" in proc.stdout
        with pytest.raises(StoreError):  # same process, same root: refused as well
            EventStore(tmp_path / "s", fsync=False)
        store.append([sysmon("a", "b")], endpoint=EP)  # the owner is unaffected
    with EventStore(tmp_path / "s", fsync=False) as again:  # released on close
        again.flush()
        assert again.count() == 1
