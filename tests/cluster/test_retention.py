"""Retention in cluster mode: ClickHouse receipt days and the local journal, never unshipped."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path

from appliance.runtime.cluster import ClusterEventSink
from appliance.services.retention import RetentionStore
from index import EndpointRef, EventStore
from index.chship import Shipper
from index.chstore import ClusterEvents
from index.clickhouse import ClickHouse
from tests.index.conftest import sysmon

DAY = 86_400.0


def _count(shards: list[ClickHouse], frontend: str) -> int:
    return sum(
        int(s.scalar(f"SELECT count() FROM heron.events_local WHERE frontend = '{frontend}'"))
        for s in shards
    )


def test_old_receipt_days_are_dropped_and_unshipped_events_kept(
    tmp_path: Path, shards: list[ClickHouse]
) -> None:
    frontend = f"fe-{uuid.uuid4().hex[:8]}"
    now = [time.time() - 10 * DAY]
    local = EventStore(tmp_path / "events", fsync=False, clock=lambda: now[0])
    shipper = Shipper(
        local.journal, shards, frontend=frontend, state_path=tmp_path / "events" / "ship.json"
    )
    sink = ClusterEventSink(local, shipper, ClusterEvents(shards[0]))
    try:
        assert isinstance(sink, RetentionStore)
        ep = EndpointRef(f"{frontend}-ep", "H")
        sink.append([sysmon("C:\\old.exe", "old")] * 5, endpoint=ep, batch_id="old")
        now[0] = time.time()
        sink.append([sysmon("C:\\new.exe", "new")] * 3, endpoint=ep, batch_id="new")
        # Not shipped yet: ClickHouse has nothing to drop and the journal must stay whole.
        assert sink.apply_retention(max_age=timedelta(days=3)) == 1
        while shipper.lag():
            shipper.ship_once()
        assert _count(shards, frontend) == 8
        min_seq = sink.apply_retention(max_age=timedelta(days=3))
        assert _count(shards, frontend) == 3
        assert min_seq == 6 and local.stats()["min_seq"] == 6
    finally:
        sink.close()
