"""The journal under I/O errors: failed writes leave nothing, reads never see them."""

from __future__ import annotations

from pathlib import Path

import pytest

import index.journal
from index.errors import StoreError
from index.journal import Journal

EP = {"uuid": "u", "hostname": "h"}


def _ev(tag: str, size: int = 10) -> dict[str, object]:
    return {"Event": {"EventData": {"Tag": tag, "Pad": "x" * size}}}


def _append(journal: Journal, tag: str, size: int = 10) -> None:
    journal.append([_ev(tag, size)], endpoint=EP, batch_id=tag, rt_ns=1, first_seq=journal.next_seq)


class _FailingFsync:
    """``os.fsync`` failing the next ``n`` calls (EIO)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.n = 0
        self.real = index.journal._fsync
        monkeypatch.setattr(index.journal, "_fsync", self)

    def __call__(self, fd: int) -> None:
        if self.n:
            self.n -= 1
            raise OSError(5, "Input/output error")
        self.real(fd)


def test_consecutive_failed_writes_leave_no_bytes_and_acked_records_survive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "j", fsync=True)
    fsync = _FailingFsync(monkeypatch)
    _append(journal, "a1")
    size = journal.segments()[-1].stat().st_size
    for tag, pad in (("u1", 10), ("u2", 5000)):  # two in a row, the second one larger
        fsync.n = 1  # the append's fsync fails; the roll-back's succeeds
        with pytest.raises(StoreError, match="journal write failed"):
            _append(journal, tag, pad)
        assert journal.segments()[-1].stat().st_size == size
    _append(journal, "a2")
    assert [(r.first_seq, r.batch_id) for r in journal.read()] == [(1, "a1"), (2, "a2")]
    journal.close()
    reopened = Journal(tmp_path / "j", fsync=True)
    assert reopened.next_seq == 3
    assert [(r.first_seq, r.batch_id) for r in reopened.read()] == [(1, "a1"), (2, "a2")]


def test_read_never_returns_a_write_in_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "j", fsync=True)
    _append(journal, "a1")
    seen: list[list[str | None]] = []
    real = index.journal._fsync

    def fsync(fd: int) -> None:
        seen.append([r.batch_id for r in journal.read()])  # the repair reading meanwhile
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(index.journal, "_fsync", fsync)
    with pytest.raises(StoreError):
        _append(journal, "unacked")
    monkeypatch.setattr(index.journal, "_fsync", real)
    assert seen and all(batch == ["a1"] for batch in seen)


def test_a_failed_directory_fsync_of_a_new_segment_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    real = index.journal.fsync_dir
    state = {"fail": True}

    def fsync_dir(path: Path) -> None:
        calls.append(path)
        if state["fail"] and path.name == "j":
            state["fail"] = False
            raise OSError(5, "Input/output error")
        real(path)

    monkeypatch.setattr(index.journal, "fsync_dir", fsync_dir)
    journal = Journal(tmp_path / "j", fsync=True)
    with pytest.raises(StoreError):
        _append(journal, "first")
    _append(journal, "retry")
    assert [p.name for p in calls].count("j") == 2  # synced again before the retry's ack
    assert [r.batch_id for r in journal.read()] == ["retry"]


def test_skip_to_never_reuses_sequence_numbers(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", fsync=False)
    _append(journal, "a1")
    journal.skip_to(10)
    journal.skip_to(5)  # never backwards
    _append(journal, "a2")
    assert [r.first_seq for r in journal.read()] == [1, 10]
