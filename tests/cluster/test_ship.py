"""The journal shipper: every journaled event lands in ClickHouse exactly once, even across
a kill -9 of the shipping process and a lost bookkeeping file."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from index import EndpointRef, EventStore
from index.chship import Shipper
from index.clickhouse import ClickHouse, shard_of
from tests.index.conftest import sysmon

REPO = Path(__file__).resolve().parents[2]


def spread_endpoints(tag: str, n: int, shards: int) -> list[EndpointRef]:
    """``n`` endpoints, as many on each shard (so every test crosses shards)."""
    out: list[EndpointRef] = []
    i = 0
    while len(out) < n:
        uuid_ = f"{tag}-ep{i}"
        if sum(shard_of(e.uuid, shards) == shard_of(uuid_, shards) for e in out) < n // shards:
            out.append(EndpointRef(uuid_, f"HOST-{i}"))
        i += 1
    return out


def _fill(root: Path, events_per_batch: int, batches: int, tag: str) -> int:
    """Journal ``batches`` batches from 4 endpoints into an embedded store (the front-end)."""
    eps = spread_endpoints(tag, 4, 2)
    with EventStore(root, fsync=False) as store:
        for b in range(batches):
            events = [
                sysmon(f"C:\\bin\\tool{b}.exe", f"tool{b} --n {i} {tag}")
                for i in range(events_per_batch)
            ]
            store.append(events, endpoint=eps[b % 4], batch_id=f"b{b}")
        store.flush()
        return store.journal.next_seq - 1


def _counts(shards: list[ClickHouse], frontend: str) -> tuple[int, int]:
    total = distinct = 0
    for shard in shards:
        n, d = shard.rows(
            f"SELECT count(), uniqExact(seq) FROM heron.events_local WHERE frontend = '{frontend}'"
        )[1][0]
        total, distinct = total + int(n), distinct + int(d)
    return total, distinct


def _shipper(root: Path, shards: list[ClickHouse], frontend: str) -> Shipper:
    from index.journal import Journal

    return Shipper(
        Journal(root / "journal", fsync=False),
        shards,
        frontend=frontend,
        state_path=root / "ship.json",
    )


def test_ships_everything_once_and_spreads_endpoints_over_shards(
    tmp_path: Path, shards: list[ClickHouse]
) -> None:
    frontend = f"fe-{uuid.uuid4().hex[:8]}"
    last = _fill(tmp_path, 25, 8, frontend)
    shipper = _shipper(tmp_path, shards, frontend)
    assert shipper.lag() == last
    while shipper.lag():
        shipper.ship_once()
    assert _counts(shards, frontend) == (last, last)
    assert shipper.health() == {"state": "ok", "lag": 0, "shipped_seq": last, "error": None}
    for i, shard in enumerate(shards):
        eps = {
            r[0]
            for r in shard.rows(
                f"SELECT DISTINCT endpoint FROM heron.events_local WHERE frontend = '{frontend}'"
            )[1]
        }
        assert eps and all(shard_of(ep, len(shards)) == i for ep in eps)
    # The bookkeeping file is lost: the shards tell what landed, nothing is sent twice.
    (tmp_path / "ship.json").unlink()
    again = _shipper(tmp_path, shards, frontend)
    while again.lag():
        again.ship_once()
    assert _counts(shards, frontend) == (last, last)


def test_kill_9_while_shipping_then_restart_is_exactly_once(
    tmp_path: Path, shards: list[ClickHouse]
) -> None:
    frontend = f"fe-{uuid.uuid4().hex[:8]}"
    last = _fill(tmp_path, 50, 120, frontend)
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.cluster.ship_child",
            str(tmp_path),
            frontend,
            *(s.url for s in shards),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
    )
    try:
        while _counts(shards, frontend)[0] == 0 and child.poll() is None:
            pass  # NOTE: busy-poll on the condition (ClickHouse answers each poll)
        child.kill()
    finally:
        child.wait()
    landed = _counts(shards, frontend)[0]
    assert 0 < landed < last, "the kill must land while shipping"
    shipper = _shipper(tmp_path, shards, frontend)
    while shipper.lag():
        shipper.ship_once()
    assert _counts(shards, frontend) == (last, last)


def test_unreachable_shard_is_a_health_state_and_nothing_is_lost(
    tmp_path: Path, shards: list[ClickHouse]
) -> None:
    frontend = f"fe-{uuid.uuid4().hex[:8]}"
    last = _fill(tmp_path, 10, 4, frontend)
    dead = ClickHouse("http://127.0.0.1:9", timeout=2)  # discard port: refused
    from index.journal import Journal

    shipper = Shipper(
        Journal(tmp_path / "journal", fsync=False),
        [shards[0], dead],
        frontend=frontend,
        state_path=tmp_path / "ship-dead.json",
        retry_interval=0.05,
    )
    shipper.start()
    try:
        while shipper.last_error is None:
            shipper.notify()
        health: dict[str, Any] = shipper.health()
        assert health["state"] == "failing" and health["lag"] == last
    finally:
        shipper.stop()
