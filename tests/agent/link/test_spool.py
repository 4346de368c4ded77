"""Spool: durability, ordering, priority lanes, eviction accounting, crash repair."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from agent.link.health import HEALTH_CHANNEL, HEALTH_EVICTED
from agent.link.segments import Lane
from agent.link.spool import Spool
from rules import wire
from tests.support.clock import Clock
from tests.support.events import gene_event


def ev(i: int, detection: bool = False) -> dict:
    detect = {"Signature": ["x"], "Criticality": 8} if detection else None
    return gene_event(1, {"N": i}, channel="c", detect=detect)


def drain(spool: Spool) -> list[dict]:
    out = []
    while (b := spool.next_batch(force=True)) is not None:
        out += [orjson.loads(line) for line in b.data.splitlines()]
        spool.ack(b)
    return out


def test_replay_is_ordered_and_detections_first(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_events=3) as s:
        for i in range(10):
            s.submit(ev(i, detection=(i % 4 == 0)))
        got = drain(s)
    nums = [e["Event"]["EventData"]["N"] for e in got]
    assert nums == [0, 4, 8, 1, 2, 3, 5, 6, 7, 9]


def test_open_segment_waits_for_max_batch_delay(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    with Spool(tmp_path, max_batch_delay=1.0, clock=clock) as s:
        s.submit(ev(1))
        assert s.next_batch() is None
        clock.advance(1.5)
        b = s.next_batch()
        assert b is not None and b.count == 1 and b.lane is Lane.EVENTS


def test_batch_id_is_stable_across_restart(tmp_path: Path) -> None:
    s = Spool(tmp_path)
    s.submit(ev(1))
    b1 = s.next_batch(force=True)
    assert b1 is not None
    s.close()  # not acked: e.g. crash after the manager's 200, before our delete
    s2 = Spool(tmp_path)
    b2 = s2.next_batch(force=True)
    assert b2 is not None and b2.batch_id == b1.batch_id and b2.data == b1.data
    s2.ack(b2)
    s2.submit(ev(2))
    b3 = s2.next_batch(force=True)
    assert b3 is not None and b3.batch_id != b1.batch_id
    s2.close()


def test_sequence_never_reused_after_spool_empties(tmp_path: Path) -> None:
    ids = set()
    for _ in range(3):
        with Spool(tmp_path) as s:
            s.submit(ev(1))
            b = s.next_batch(force=True)
            assert b is not None
            ids.add(b.batch_id)
            s.ack(b)
    assert len(ids) == 3


def test_kill_without_close_loses_nothing_and_repairs_torn_line(tmp_path: Path) -> None:
    s = Spool(tmp_path, fsync_interval=3600)
    for i in range(5):
        s.submit(ev(i))
    # simulate kill -9 mid-write: no close(), and half a line at the end of the open segment
    opened = next((tmp_path / "events").glob("*.open"))
    with open(opened, "ab") as fh:
        fh.write(b'{"Event": {"tor')
    s2 = Spool(tmp_path)
    assert [e["Event"]["EventData"]["N"] for e in drain(s2)] == [0, 1, 2, 3, 4]
    assert s2.stats().queued_events == 0
    s2.close()


def test_eviction_is_oldest_bulk_first_counted_and_reported(tmp_path: Path) -> None:
    line = len(orjson.dumps(ev(0))) + 1
    with Spool(tmp_path, max_bytes=line * 40, segment_bytes=line * 10, hostname="h1") as s:
        s.submit(ev(-1, detection=True))
        for i in range(60):
            s.submit(ev(i))
        st = s.stats()
        assert st.evicted_events > 0 and st.evicted_segments > 0
        assert st.queued_bytes <= line * 40 + 2048
        got = drain(s)
    health = [e for e in got if e["Event"]["System"]["Channel"] == HEALTH_CHANNEL]
    assert health and health[0]["Event"]["System"]["EventID"] == HEALTH_EVICTED
    assert sum(h["Event"]["EventData"]["DroppedEvents"] for h in health) == st.evicted_events
    nums = [e["Event"]["EventData"]["N"] for e in got if "N" in e["Event"]["EventData"]]
    assert nums[0] == -1  # the detection survived; bulk events were evicted instead
    bulk = nums[1:]
    assert bulk == sorted(bulk) and bulk[-1] == 59  # newest kept, order kept
    assert len(bulk) + st.evicted_events == 60


def test_oversize_event_is_dropped_and_reported(tmp_path: Path) -> None:
    with Spool(tmp_path) as s:
        s.submit_line(b"x" * (wire.MAX_EVENT_LINE + 1) + b"\n")
        assert s.stats().oversize_dropped == 1
        got = drain(s)
    assert got[0]["Event"]["System"]["EventID"] == 9002


def test_inflight_batch_is_not_evicted_and_release_requeues(tmp_path: Path) -> None:
    line = len(orjson.dumps(ev(0))) + 1
    with Spool(tmp_path, max_bytes=line * 40, segment_bytes=line * 10) as s:
        for i in range(10):
            s.submit(ev(i))
        first = s.next_batch(force=True)
        assert first is not None
        for i in range(10, 60):
            s.submit(ev(i))
        assert first.path.exists()
        s.release(first)
        while (again := s.next_batch(force=True)) is not None and again.lane is Lane.DETECTIONS:
            s.ack(again)  # the eviction reports go first
        assert again is not None and again.batch_id == first.batch_id


def test_reject_moves_batch_aside_and_reports(tmp_path: Path) -> None:
    with Spool(tmp_path) as s:
        s.submit(ev(1))
        b = s.next_batch(force=True)
        assert b is not None
        s.reject(b, "HTTP 400")
        assert s.stats().rejected_batches == 1
        assert list((tmp_path / "rejected").glob("*.seg"))
        got = drain(s)
    assert got[0]["Event"]["System"]["EventID"] == 9003


def test_files_are_private(tmp_path: Path) -> None:
    if os.name != "posix":
        pytest.skip("posix modes")
    with Spool(tmp_path) as s:
        s.submit(ev(1))
        seg = next((tmp_path / "events").glob("*.open"))
        assert seg.stat().st_mode & 0o077 == 0
