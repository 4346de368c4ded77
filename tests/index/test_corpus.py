"""Search and SQL over the real corpus events (../shared/gene-oracle/corpus-events.jsonl.gz)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from index import EventStore
from rules.event import Event, event_time
from tests.index.conftest import ENDPOINTS, endpoint_for

Corpus = list[tuple[str, dict[str, Any]]]


def _data(event: dict[str, Any]) -> dict[str, Any]:
    return event["Event"].get("EventData") or {}


def _all_pages(store: EventStore, query: str = "", limit: int = 500, **kw: Any) -> list[dict]:
    events, cursor = [], None
    while True:
        page = store.search(query, limit=limit, cursor=cursor, **kw)
        events += page.events
        cursor = page.next_cursor
        if cursor is None:
            return events


def test_every_event_is_stored_once(corpus_store: EventStore, corpus: Corpus) -> None:
    assert corpus_store.count() == len(corpus)
    rows = corpus_store.sql("SELECT count(*), count(DISTINCT seq) FROM events").rows
    assert rows == [(len(corpus), len(corpus))]


def test_find_by_sha256_from_hashes(corpus_store: EventStore, corpus: Corpus) -> None:
    with_hashes = [e for _, e in corpus if "SHA256=" in str(_data(e).get("Hashes", ""))]
    assert with_hashes
    sha = re.search(r"SHA256=([0-9A-Fa-f]{64})", _data(with_hashes[0])["Hashes"]).group(1)
    expected = sum(1 for _, e in corpus if sha.lower() in str(_data(e)).lower())
    for query in (f"sha256:{sha}", f"sha256:{sha.lower()}", f"Hashes:{sha}", sha):
        page = corpus_store.search(query)
        assert page.total == expected, query
        assert all(sha.lower() in str(_data(e)).lower() for e in page.events)


def test_find_by_command_line_phrase(corpus_store: EventStore, corpus: Corpus) -> None:
    pattern = re.compile(r"(?<![0-9a-z])net[^0-9a-z]+user(?![0-9a-z])")
    expected = [
        e for _, e in corpus if pattern.search(str(_data(e).get("CommandLine", "")).lower())
    ]
    assert expected
    page = corpus_store.search('CommandLine:"net user"', limit=1000)
    assert page.total == len(expected)
    assert all("net" in e["Event"]["EventData"]["CommandLine"].lower() for e in page.events)


def test_find_by_path_with_backslashes(corpus_store: EventStore, corpus: Corpus) -> None:
    path = "C:\\Windows\\System32\\cmd.exe"
    expected = sum(1 for _, e in corpus if str(_data(e).get("Image", "")).lower() == path.lower())
    assert expected > 0
    for query in (f"Image:{path}", f'Image:"{path}"', f"Image:{path.upper()}"):
        assert corpus_store.search(query).total == expected, query
    # Anchored wildcard over the full value, with backslashes literal.
    downloads = sum(
        1
        for _, e in corpus
        if re.fullmatch(
            r"c:\\users\\.*\\downloads\\.*\.exe", str(_data(e).get("TargetFilename", "")).lower()
        )
    )
    assert corpus_store.search("TargetFilename:C:\\Users\\*\\Downloads\\*.exe").total == downloads


def test_wildcard_contains(corpus_store: EventStore, corpus: Corpus) -> None:
    expected = sum(1 for _, e in corpus if "powershell" in str(_data(e).get("Image", "")).lower())
    assert expected > 0
    assert corpus_store.search("Image:*powershell*").total == expected
    assert corpus_store.search("Image:*PowerShell* AND EventID:1").total == sum(
        1
        for _, e in corpus
        if "powershell" in str(_data(e).get("Image", "")).lower() and Event(e).event_id == 1
    )


def test_time_range_newest_first(corpus_store: EventStore, corpus: Corpus) -> None:
    times = sorted(t for _, e in corpus if (t := event_time(e)) is not None)
    since, until = times[len(times) // 3], times[len(times) // 3] + timedelta(days=30)
    expected = sum(1 for _, e in corpus if (t := event_time(e)) and since <= t <= until)
    events = _all_pages(corpus_store, since=since, until=until, limit=97)
    assert len(events) == expected
    stamps = [event_time(e) for e in events]
    assert stamps == sorted(stamps, reverse=True)
    assert corpus_store.search(f"ts:[{since.isoformat()} TO {until.isoformat()}]").total == expected


def test_pagination_returns_each_event_once(corpus_store: EventStore, corpus: Corpus) -> None:
    events = _all_pages(corpus_store, "EventID:4624 OR EventID:1", limit=50)
    expected = sum(1 for _, e in corpus if Event(e).event_id in (1, 4624))
    assert len(events) == expected
    hashes = Counter(e["Event"]["EdrData"]["Event"]["Hash"] for e in events)
    want = Counter(
        e["Event"]["EdrData"]["Event"]["Hash"]
        for e in corpus_store.iter_events(query="EventID:4624 OR EventID:1")
    )
    assert hashes == want


def test_endpoint_filter(corpus_store: EventStore, corpus: Corpus) -> None:
    target = ENDPOINTS[1]
    expected = sum(1 for f, _ in corpus if endpoint_for(f) == target)
    page = corpus_store.search(endpoint=target.uuid, limit=10)
    assert page.total == expected
    for event in page.events:
        assert event["Event"]["EdrData"]["Endpoint"] == target.to_edr()
    assert corpus_store.search(f"hostname:{target.hostname}").total == expected
    assert corpus_store.search(endpoint="no-such-endpoint").total == 0


def test_boolean_operators(corpus_store: EventStore, corpus: Corpus) -> None:
    sysmon = sum(1 for _, e in corpus if Event(e).channel == "Microsoft-Windows-Sysmon/Operational")
    eid1 = sum(
        1
        for _, e in corpus
        if Event(e).channel == "Microsoft-Windows-Sysmon/Operational" and Event(e).event_id == 1
    )
    channel = 'Channel:"Microsoft-Windows-Sysmon/Operational"'
    assert corpus_store.search(channel).total == sysmon
    assert corpus_store.search(f"{channel} AND NOT EventID:1").total == sysmon - eid1
    assert corpus_store.search(f"{channel} -EventID:1").total == sysmon - eid1
    assert corpus_store.search(f"NOT {channel}").total == len(corpus) - sysmon
    both = corpus_store.search("EventID:1 OR EventID:3").total
    assert both == corpus_store.search("EventID:1").total + corpus_store.search("EventID:3").total
    assert corpus_store.search("EventID:[1 TO 3]").total == sum(
        1 for _, e in corpus if 1 <= Event(e).event_id <= 3
    )


def test_sql_aggregations(corpus_store: EventStore, corpus: Corpus) -> None:
    result = corpus_store.sql(
        "SELECT event_id, count(*) AS n FROM events GROUP BY event_id ORDER BY n DESC, event_id"
    )
    assert result.columns == ["event_id", "n"]
    expected = Counter(Event(e).event_id for _, e in corpus)
    assert dict(result.rows) == dict(expected)
    per_endpoint = dict(corpus_store.sql("SELECT endpoint, count(*) FROM events GROUP BY 1").rows)
    assert per_endpoint == dict(Counter(endpoint_for(f).uuid.lower() for f, _ in corpus))
    hourly = corpus_store.sql(
        "SELECT date_trunc('hour', ts) AS h, count(*) FROM events GROUP BY 1 ORDER BY 1"
    )
    assert sum(n for _, n in hourly.rows) == len(corpus)


@pytest.mark.parametrize("query", ["sha256:", "Image:(", '"unterminated', "EventID:x", "a AND"])
def test_malformed_queries_are_index_query_errors(corpus_store: EventStore, query: str) -> None:
    from index import IndexQueryError

    with pytest.raises(IndexQueryError):
        corpus_store.search(query)
