"""Retro-hunt over ClickHouse (prefilter in SQL, engine in worker processes) finds exactly what
it finds over the embedded store holding the same events (the real corpus and Gene rules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from appliance.runtime.cluster import ClusterEventSink
from appliance.services.hunting import Hunting, HuntResult, HuntStopped
from index import EventStore
from index.chstore import ClusterEvents
from tests.index.conftest import ENDPOINTS


@pytest.fixture(scope="module")
def gene_rules(shared_dir: Path) -> list[dict[str, Any]]:
    path = shared_dir / "corpus" / "gene-rules" / "compiled.gen"
    if not path.exists():
        pytest.skip("gene-rules not present")
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _hunt(hunting: Hunting, rules: list[dict[str, Any]], endpoint: str, **kw: Any) -> HuntResult:
    return hunting.retro_hunt(
        rules,
        since=None,
        until=None,
        endpoint=endpoint,
        max_events=kw.pop("max_events", 1_000_000),
        max_matches=100_000,
        **kw,
    )


def _found(result: HuntResult) -> set[tuple[str, tuple[str, ...]]]:
    return {
        (
            e["Event"]["EdrData"]["Event"]["Hash"],
            tuple(e["Event"]["Detection"]["Signature"]),
        )
        for e in result.matches
    }


def _cluster(events: ClusterEvents, workers: int) -> Hunting:
    # read side only: no local store, no shipper
    sink = ClusterEventSink(None, None, events)  # type: ignore[arg-type]
    sink.hunt_workers = workers
    return Hunting(sink)


@pytest.mark.parametrize("workers", [0, 2])
def test_cluster_retro_hunt_finds_what_the_embedded_store_finds(
    workers: int,
    gene_rules: list[dict[str, Any]],
    corpus_store: EventStore,
    cluster_corpus: ClusterEvents,
) -> None:
    embedded = Hunting(corpus_store)
    cluster = _cluster(cluster_corpus, workers)
    total_hits = 0
    fewer_rows = False
    for ep in ENDPOINTS:
        want = _hunt(embedded, gene_rules, ep.uuid)
        got = _hunt(cluster, gene_rules, ep.uuid)
        assert _found(got) == _found(want)
        assert (got.detections, got.filtered, got.rules) == (
            want.detections,
            want.filtered,
            want.rules,
        )
        assert not got.truncated
        total_hits += want.detections
        fewer_rows |= got.scanned < want.scanned
    assert total_hits > 0
    assert fewer_rows, "the (channel, EventID) prefilter should keep rows in ClickHouse"


def test_iocs_disable_the_prefilter_and_bounds_hold(
    gene_rules: list[dict[str, Any]], corpus_store: EventStore, cluster_corpus: ClusterEvents
) -> None:
    ep = ENDPOINTS[0].uuid
    cluster = _cluster(cluster_corpus, 2)
    image = next(
        str(data["Image"])
        for e in corpus_store.iter_events(endpoint=ep)
        if isinstance(data := e["Event"].get("EventData"), dict)  # type: ignore[attr-defined]
        and "Image" in data
    )
    iocs = [{"type": "filename", "value": image.rsplit("\\", 1)[-1]}]
    got = _hunt(cluster, gene_rules[:1], ep, iocs=iocs)
    want = _hunt(Hunting(corpus_store), gene_rules[:1], ep, iocs=iocs)
    assert got.scanned == want.scanned == corpus_store.count("", endpoint=ep)
    assert _found(got) == _found(want) and got.iocs == 1
    capped = _hunt(cluster, gene_rules, ep, iocs=iocs, max_events=10)
    assert capped.scanned == 10 and capped.truncated
    stopped = _hunt(cluster, gene_rules, ep, iocs=iocs, control=_StopAfter(64), chunk=32)
    assert stopped.scanned == 64 and stopped.truncated and stopped.stopped == "time"


class _StopAfter:
    """A job's control (appliance.services.hunt_jobs) whose time ran out after ``n`` events."""

    def __init__(self, n: int) -> None:
        self.n = n

    def checkpoint(self, scanned: int, detections: int, filtered: int) -> None:
        if scanned >= self.n:
            raise HuntStopped("time")
