"""Retention by age and size, segment merging, stats."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from index import EndpointRef, EventStore
from tests.index.conftest import sysmon

EP = EndpointRef("ret-1", "WS-1")
MakeStore = Callable[..., EventStore]


class FakeClock:
    """Settable epoch-seconds clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _batch(tag: str, n: int = 20) -> list[dict]:
    return [sysmon(f"C:\\{tag}\\{i}.exe", f"{tag} {i}") for i in range(n)]


def test_retention_by_age_drops_old_receipts(make_store: MakeStore) -> None:
    clock = FakeClock(1_700_000_000.0)
    store = make_store(clock=clock, journal_segment_bytes=1)  # one segment per batch
    store.append(_batch("old"), endpoint=EP, batch_id="old")
    clock.now += 10 * 86400
    store.append(_batch("new"), endpoint=EP, batch_id="new")
    store.flush()
    kept_from = store.apply_retention(max_age=timedelta(days=5))
    assert kept_from == 21
    assert store.count() == 20
    assert store.search("Image:C:\\old\\*").total == 0
    assert store.sql("SELECT min(seq), count(*) FROM events").rows == [(21, 20)]
    assert len(list((store.root / "journal").glob("*.wal"))) == 1
    # A dropped batch id may come back (it is no longer known), a kept one is still a duplicate.
    assert store.append(_batch("new"), endpoint=EP, batch_id="new").duplicate
    assert store.reindex() == 20  # reindex honours the retention watermark


def test_retention_survives_reopen(tmp_path) -> None:
    clock = FakeClock(1_700_000_000.0)
    with EventStore(tmp_path / "s", clock=clock, fsync=False, journal_segment_bytes=1) as store:
        store.append(_batch("old"), endpoint=EP)
        clock.now += 10 * 86400
        store.append(_batch("new"), endpoint=EP)
        store.apply_retention(max_age=timedelta(days=1))
    with EventStore(tmp_path / "s", clock=clock, fsync=False) as store:
        store.flush()
        assert store.count() == 20
        assert store.stats()["min_seq"] == 21


def test_retention_by_size(make_store: MakeStore) -> None:
    store = make_store(journal_segment_bytes=1)
    for b in range(10):
        store.append(_batch(f"b{b}"), endpoint=EP)
    store.flush()
    total = store.disk_usage()["total"]
    kept_from = store.apply_retention(max_bytes=total // 2)
    assert kept_from > 1
    remaining = store.count()
    assert 0 < remaining < 200
    assert store.sql("SELECT min(seq) FROM events").rows == [(kept_from,)]


def test_merge_segments_and_stats(make_store: MakeStore) -> None:
    store = make_store()
    for b in range(6):
        store.append(_batch(f"s{b}", 5), endpoint=EP)
        store.flush()  # one commit (one segment) per batch
    assert store.stats()["segments"] >= 2
    segments = store.merge_segments()
    assert segments >= 1
    stats = store.stats()
    assert stats["events"] == 30 and stats["next_seq"] == 31 and stats["pending"] == 0
    assert stats["indexer_error"] is None
    assert stats["bytes"]["total"] == sum(v for k, v in stats["bytes"].items() if k != "total")
    assert store.search("Image:C:\\s3\\*").total == 5


def test_retention_by_size_is_stable_without_new_events_and_across_reopen(tmp_path) -> None:
    """The files do not shrink after deletes: the same cap again must not drop more."""
    with EventStore(tmp_path / "s", fsync=False, journal_segment_bytes=1) as store:
        for b in range(10):
            store.append(_batch(f"b{b}"), endpoint=EP)
        store.flush()
        cap = store.disk_usage()["total"] // 2
        kept_from = store.apply_retention(max_bytes=cap)
        assert kept_from > 1
        assert store.apply_retention(max_bytes=cap) == kept_from
        store.merge_segments()
        assert store.apply_retention(max_bytes=cap) == kept_from
        remaining = store.count()
    with EventStore(tmp_path / "s", fsync=False) as store:  # the baseline is in store.json
        store.flush()
        assert store.apply_retention(max_bytes=cap) == kept_from
        assert store.count() == remaining
        for b in range(10, 15):
            store.append(_batch(f"b{b}"), endpoint=EP)
        store.flush()
        moved = store.apply_retention(max_bytes=cap)  # new events beyond the cap: oldest go
        assert moved > kept_from
        assert store.sql("SELECT min(seq) FROM events").rows == [(moved,)]
        assert store.search("Image:C:\\b14\\*").total == 20


def test_retention_by_size_keeps_working_after_a_pass_that_dropped_everything(
    make_store: MakeStore,
) -> None:
    store = make_store(journal_segment_bytes=10**9)  # one journal segment: it is never dropped
    for b in range(4):
        store.append(_batch(f"e{b}"), endpoint=EP)
    store.flush()
    store.apply_retention(max_bytes=1)
    assert store.count() == 0
    for b in range(4, 8):
        store.append(_batch(f"e{b}"), endpoint=EP)
    store.flush()
    store.apply_retention(max_bytes=1)
    assert store.count() == 0  # the cap still applies
