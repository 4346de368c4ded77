"""The query language over ClickHouse returns what the embedded store returns, on the real
corpus (../shared/gene-oracle), shipped by the journal shipper into two shards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from index import EventStore, IndexQueryError, SqlError
from index.chship import Shipper
from index.chstore import ClusterEvents
from index.clickhouse import ClickHouse
from tests.cluster.servers import HUNTER_PASSWORD
from tests.index.conftest import ENDPOINTS

Corpus = list[tuple[str, dict[str, Any]]]

QUERIES = [
    "",
    "EventID:1",
    "EventID:[1 TO 7]",
    "EventID:>=5000",
    "EventID:{1 TO 13}",
    "Channel:Security",
    "channel:microsoft-windows-sysmon/operational AND EventID:7",
    "Image:C:\\Windows\\System32\\cmd.exe",
    "Image:*cmd.exe",
    "Image:*powershell*",
    "CommandLine:*whoami*",
    "cmd.exe",
    "ping",
    '"windows system32"',
    "consent.exe OR ping.exe",
    "cmd.exe -ping",
    "NOT EventID:1",
    "ParentImage:(cmd.exe OR explorer.exe)",
    "User:SYSTEM",
    "SubjectUserName:*$",
    "IpPort:0",
    "ObjectType:File",
    "AccessMask:0x1",
    "IntegrityLevel:High",
    "Hashes:*",
    "hostname:HOST-1",
    "detection:false",
    "svchost.exe AND EventID:1",
    "ts:>2019-01-01",
    "ts:[2017-01-01 TO 2019-06-01]",
]


@pytest.fixture(scope="module")
def cluster_corpus(corpus_store: EventStore, shards: list[ClickHouse]) -> Iterator[ClusterEvents]:
    """The corpus store's journal shipped to both shards (as a front-end's would be)."""
    root = Path(corpus_store.root)
    shipper = Shipper(
        corpus_store.journal, shards, frontend="corpus", state_path=root / "ship.json"
    )
    while shipper.lag():
        shipper.ship_once()
    hunter = ClickHouse(shards[1].url, user="hunter", password=HUNTER_PASSWORD)
    yield ClusterEvents(shards[1], hunter)


def _count(store: Any, query: str) -> int:
    return sum(store.count(query, endpoint=ep.uuid) for ep in ENDPOINTS)


@pytest.mark.parametrize("query", QUERIES)
def test_counts_match_the_embedded_store(
    query: str, corpus_store: EventStore, cluster_corpus: ClusterEvents
) -> None:
    embedded = _count(corpus_store, query)
    assert _count(cluster_corpus, query) == embedded
    if query in ("", "EventID:1", "cmd.exe"):
        assert embedded > 0


def test_pages_are_newest_first_and_each_event_once(
    corpus_store: EventStore, cluster_corpus: ClusterEvents, corpus: Corpus
) -> None:
    hashes: list[str] = []
    times: list[str] = []
    ep = ENDPOINTS[0].uuid
    cursor = None
    while True:
        page = cluster_corpus.search("", endpoint=ep, limit=97, cursor=cursor)
        for event in page.events:
            hashes.append(event["Event"]["EdrData"]["Event"]["Hash"])
            times.append(event["Event"]["System"]["TimeCreated"]["SystemTime"])
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(hashes) == page.total == corpus_store.count("", endpoint=ep)
    assert len(set(zip(hashes, times, strict=True))) == len(hashes)
    embedded = corpus_store.search("", endpoint=ep, limit=50).events
    assert [e["Event"]["EdrData"]["Event"]["Hash"] for e in embedded] == hashes[:50]


def test_malformed_query_says_where(cluster_corpus: ClusterEvents) -> None:
    with pytest.raises(IndexQueryError) as info:
        cluster_corpus.count("EventID:[1 TO")
    assert info.value.position == 8


def test_sql_hunting_is_read_only_and_bounded(cluster_corpus: ClusterEvents) -> None:
    result = cluster_corpus.sql(
        "SELECT channel, count() AS n FROM heron.events "
        "WHERE frontend = 'corpus' GROUP BY channel ORDER BY n DESC"
    )
    assert result.columns == ["channel", "n"] and int(result.rows[0][1]) > 0
    assert cluster_corpus.sql("SELECT number FROM system.numbers LIMIT 20", max_rows=5).truncated
    for bad in (
        "INSERT INTO heron.events_local (seq) VALUES (1)",
        "DROP TABLE heron.events",
        "SELECT 1; SELECT 2",
        "SELECT 1 FORMAT TabSeparated",
    ):
        with pytest.raises(SqlError):
            cluster_corpus.sql(bad)
    # The server refuses writes from the hunter even past our own checks.
    with pytest.raises(SqlError, match="readonly|Cannot execute query in readonly mode"):
        cluster_corpus.sql("WITH 1 AS x SELECT x FROM system.one SETTINGS readonly=0")
    with pytest.raises(SqlError, match="timeout|TIMEOUT|Timeout"):
        cluster_corpus.sql(
            "SELECT count() FROM system.numbers WHERE sleepEachRow(0) = 0 OR number % 3 = 7"
        )


def test_retro_hunt_prefilter_goes_into_sql(cluster_corpus: ClusterEvents) -> None:
    sysmon = "microsoft-windows-sysmon/operational"
    got = list(
        cluster_corpus.iter_events(
            prefilter=[("Microsoft-Windows-Sysmon/Operational", 1)], endpoint=ENDPOINTS[0].uuid
        )
    )
    assert got and all(e["Event"]["System"]["Channel"].lower() == sysmon for e in got)
    assert len(got) == cluster_corpus.count(
        'EventID:1 AND channel:"' + sysmon + '"', endpoint=ENDPOINTS[0].uuid
    )


def test_the_parity_queries_are_not_vacuous(corpus_store: EventStore) -> None:
    counts = [_count(corpus_store, q) for q in QUERIES]
    assert sum(1 for c in counts if 0 < c < counts[0]) >= len(QUERIES) - 4, counts
