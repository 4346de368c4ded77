"""EventStore behaviour on small hand-made events: append, dedup, EdrData, search semantics."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from index import (
    AppendResult,
    EndpointRef,
    EventStore,
    IndexQueryError,
    InvalidEventError,
    StoreClosedError,
    StoreState,
)
from tests.index.conftest import sysmon

EP = EndpointRef("AB12-CD", "WS-1", "192.0.2.1", "lab")
SHA256 = "1A061C74619DE6AF8C02CBA0FA00754BDD9E3515C0E08CAD6350C7ADFC8CDD5B"
MakeStore = Callable[..., EventStore]


def test_append_sets_edrdata_and_is_idempotent(make_store: MakeStore) -> None:
    store = make_store(clock=lambda: 1_700_000_000.5)
    event = sysmon("C:\\Windows\\System32\\cmd.exe", "cmd /c whoami")
    first = store.append([event], endpoint=EP, batch_id="b1")
    assert first == AppendResult(1, 1)
    again = store.append([event], endpoint=EP, batch_id="b1")
    assert again == AppendResult(1, 1, duplicate=True)
    assert store.append([event], endpoint=EndpointRef("other"), batch_id="b1").first_seq == 2
    assert "EdrData" not in event["Event"]  # the caller's dict is not modified
    store.flush()
    page = store.search(endpoint="ab12-cd")
    assert page.total == 1
    edr = page.events[0]["Event"]["EdrData"]
    assert edr["Endpoint"] == {
        "UUID": "AB12-CD",
        "IP": "192.0.2.1",
        "Hostname": "WS-1",
        "Group": "lab",
    }
    assert edr["Event"]["ReceiptTime"] == "2023-11-14T22:13:20.500000000Z"
    assert edr["Event"]["Detection"] is False
    assert len(edr["Event"]["Hash"]) == 40


def test_searchable_within_two_seconds_without_flush(make_store: MakeStore) -> None:
    store = make_store(commit_interval=0.5)
    store.append([sysmon("C:\\x\\fresh.exe", "fresh")], endpoint=EP)
    deadline = datetime.now(UTC) + timedelta(seconds=2)
    while store.search("Image:*fresh*").total == 0:
        assert datetime.now(UTC) < deadline, "event not searchable within 2 s"
        time.sleep(0.05)  # poll like a client; a busy loop would starve the writer of the GIL


def test_invalid_events_are_rejected_before_journaling(make_store: MakeStore) -> None:
    store = make_store()
    with pytest.raises(InvalidEventError, match="event #1"):
        store.append([sysmon("a", "b"), {"nope": 1}], endpoint=EP)
    assert store.journal.next_seq == 1


def test_hashes_are_exact_raw_tokens(make_store: MakeStore) -> None:
    store = make_store()
    hashes = f"SHA1={'B' * 40},MD5={'C' * 32},SHA256={SHA256},IMPHASH={'D' * 32}"
    store.append(
        [
            sysmon("C:\\a.exe", "a", extra={"Hashes": hashes}),
            sysmon("C:\\b.exe", "b", extra={"Hashes": f"SHA256={'E' * 64}"}),
        ],
        endpoint=EP,
    )
    store.flush()
    assert store.search(f"sha256:{SHA256.lower()}").total == 1
    assert store.search(f"md5:{'c' * 32}").total == 1
    assert store.search(f"Hashes:SHA256={SHA256}").total == 1
    assert store.search(SHA256).total == 1  # free text finds long hashes too
    assert store.search(f"sha256:{SHA256[:-1]}").total == 0
    assert store.sql("SELECT sha256, md5 FROM events WHERE image = 'C:\\a.exe'").rows == [
        (SHA256.lower(), "c" * 32)
    ]


def test_windows_paths_and_wildcards(make_store: MakeStore) -> None:
    store = make_store()
    store.append(
        [
            sysmon(
                "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                "powershell -enc AAA",
            ),
            sysmon("C:\\Windows\\System32\\cmd.exe", 'cmd.exe /c "net user administrator /domain"'),
            sysmon(
                "C:\\Users\\bob\\Downloads\\cmd.exe", "x", extra={"TargetUserName": "Bob Admin"}
            ),
        ],
        endpoint=EP,
    )
    store.flush()
    assert store.search("Image:*powershell*").total == 1
    assert store.search("Image:C:\\Windows\\System32\\cmd.exe").total == 1
    assert store.search("Image:*\\cmd.exe").total == 2
    assert store.search("Image:C:\\Users\\*").total == 1
    assert store.search("Image:c:\\windows\\system32\\*.exe").total == 2  # * crosses "\\"
    assert store.search("Image:c:\\windows\\system32\\????.exe").total == 0
    assert store.search("Image:c:\\windows\\system32\\???.exe").total == 1
    assert store.search('CommandLine:"net user administrator"').total == 1
    assert store.search('CommandLine:"user net"').total == 0
    # Command lines have token-level wildcards (no whole-value token).
    assert store.search("CommandLine:*admin*").total == 1
    assert store.search("CommandLine:net*domain").total == 1
    assert store.search("CommandLine:net*nothere").total == 0
    assert store.search("CommandLine:cmd.exe /c").total == 1
    assert store.search("TargetUserName:admin").total == 1  # word match on any EventData field
    assert store.search("TargetUserName:adm").total == 0
    assert store.search("TargetUserName:adm*").total == 0  # anchored on the whole value
    assert store.search("TargetUserName:*adm*").total == 1
    assert store.search("C:\\Windows\\System32\\cmd.exe").total == 1  # free text, drive letter
    assert store.search("Image:(cmd.exe powershell.exe)").total == 3


def test_event_id_forms_and_ranges(make_store: MakeStore) -> None:
    store = make_store()
    store.append(
        [
            sysmon("a", "a", event_id=1, when="2024-03-01T10:00:00Z"),
            sysmon("b", "b", event_id="4688", when="2024-03-01T11:00:00Z"),
            sysmon(
                "c",
                "c",
                event_id={"Qualifiers": 16384, "Value": 7045},
                when="2024-03-01T12:00:00+02:00",
            ),
        ],
        endpoint=EP,
    )
    store.flush()
    assert store.search("EventID:7045").total == 1
    assert store.search("EventID:>=4688").total == 2
    assert store.search("EventID:{1 TO 4688]").total == 1
    assert store.search("ts:[2024-03-01T10:00:00Z TO 2024-03-01T10:30:00Z]").total == 2
    assert store.search("ts:<2024-03-01T10:00:00Z").total == 0
    page = store.search("")
    # c (12:00+02:00) and a (10:00Z) are the same instant: the later-stored one comes first.
    assert [e["Event"]["EventData"]["Image"] for e in page.events] == ["b", "c", "a"]
    assert store.search(since="2024-03-01T10:30:00Z").total == 1
    assert store.search(until=datetime(2024, 3, 1, 10, 0, tzinfo=UTC)).total == 2


def test_detections_only_and_retro(make_store: MakeStore) -> None:
    store = make_store()
    hit = sysmon("C:\\evil.exe", "evil")
    hit["Event"]["Detection"] = {"Signature": ["Evil", "Other"], "Criticality": 9}
    store.append([hit, sysmon("C:\\good.exe", "good")], endpoint=EP)
    store.flush()
    assert store.search(detections_only=True).total == 1
    assert store.search("Signature:evil AND Criticality:[8 TO 10]").total == 1
    stored = list(store.iter_events(query="Image:*good*"))
    assert len(stored) == 1
    stored[0]["Event"]["Detection"] = {"Signature": ["RetroRule"], "Criticality": 5}
    store.append_detections(stored, endpoint=EP, batch_id="hunt-1")
    store.flush()
    retro = store.search("retro:true")
    assert retro.total == 1
    edr = retro.events[0]["Event"]["EdrData"]["Event"]
    assert edr["Retro"] is True and edr["Detection"] is True
    assert edr["Hash"] == stored[0]["Event"]["EdrData"]["Event"]["Hash"]
    assert store.search(detections_only=True).total == 2
    assert store.sql("SELECT count(*) FROM events WHERE retro").rows == [(1,)]


def test_cursor_pagination_with_equal_timestamps(make_store: MakeStore) -> None:
    store = make_store()
    events = [sysmon(f"C:\\p{i}.exe", f"p {i}", when="2024-03-01T10:00:00Z") for i in range(25)]
    events += [sysmon("C:\\late.exe", "late", when="2024-03-01T11:00:00Z")]
    store.append(events, endpoint=EP)
    store.flush()
    seen, cursor, pages = [], None, 0
    while True:
        page = store.search(limit=4, cursor=cursor)
        assert page.total == 26
        seen += [e["Event"]["EventData"]["Image"] for e in page.events]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen[0] == "C:\\late.exe"
    assert sorted(seen) == sorted(e["Event"]["EventData"]["Image"] for e in events)
    assert pages == 7
    with pytest.raises(IndexQueryError, match="cursor"):
        store.search(cursor="not-a-cursor")


def test_closed_store_raises_and_close_is_idempotent(make_store: MakeStore) -> None:
    store = make_store()
    store.close()
    store.close()
    assert store.state is StoreState.CLOSED
    with pytest.raises(StoreClosedError):
        store.append([sysmon("a", "b")], endpoint=EP)
    with pytest.raises(StoreClosedError):
        store.search("x")


def test_concurrent_appends_and_searches(make_store: MakeStore) -> None:
    import threading

    store = make_store(commit_interval=0.2)
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(w: int) -> None:
        try:
            for b in range(15):
                store.append(
                    [sysmon(f"C:\\w{w}\\b{b}\\{i}.exe", f"w{w} b{b} {i}") for i in range(7)],
                    endpoint=EndpointRef(f"ep-{w}"),
                    batch_id=f"{b}",
                )
        except BaseException as ex:  # noqa: BLE001 - reported below
            errors.append(ex)

    def reader() -> None:
        try:
            while not stop.is_set():
                store.search("Image:*exe*", limit=5)
                store.sql("SELECT count(*) FROM events")
        except BaseException as ex:  # noqa: BLE001
            errors.append(ex)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    for t in threads[:-1]:
        t.join()
    stop.set()
    threads[-1].join()
    assert not errors
    store.flush()
    assert store.count() == 4 * 15 * 7
    assert store.sql("SELECT count(DISTINCT seq), max(seq) FROM events").rows == [(420, 420)]
    assert {store.count(endpoint=f"ep-{w}") for w in range(4)} == {105}


def test_iter_events_walks_windows_in_store_order(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import index.reader

    monkeypatch.setattr(index.reader, "_ITER_WINDOW", 7)
    store = make_store()
    store.append(
        [sysmon(f"C:\\it\\{i}.exe", f"it {i}", event_id=1 + i % 3) for i in range(40)], endpoint=EP
    )
    store.flush()
    images = [e["Event"]["EventData"]["Image"] for e in store.iter_events()]
    assert images == [f"C:\\it\\{i}.exe" for i in range(40)]
    ones = [e["Event"]["EventData"]["Image"] for e in store.iter_events(query="EventID:1")]
    assert ones == [f"C:\\it\\{i}.exe" for i in range(0, 40, 3)]


def test_attack_techniques_and_tactics_are_searchable_and_in_sql(make_store: MakeStore) -> None:
    store = make_store()
    hit = sysmon("C:\\x\\sh.exe", "sh -c decode")
    hit["Event"]["Detection"] = {
        "Signature": ["Decode"],
        "Criticality": 7,
        "ATTACK": [
            {"ID": "T1059.004", "Tactic": "execution", "Reference": ""},
            {"ID": "T1140", "Tactic": "Defense Evasion", "Description": "", "Reference": ""},
            "not an object",
        ],
    }
    plain = sysmon("C:\\x\\ls.exe", "ls")
    plain["Event"]["Detection"] = {
        "Signature": [],
        "Criticality": 0,
        "ATTACK": [{"ID": "T9999", "Tactic": "x"}],
    }
    store.append([hit, plain, sysmon("C:\\x\\other.exe", "T1140 execution")], endpoint=EP)
    store.flush()
    for query in (
        "attack:T1059",
        "attack:t1059.004",
        "technique:T1140",
        "tactic:execution",
        'tactic:"Defense Evasion"',
        "attack:defense-evasion",
        "attack:T11*",
    ):
        assert store.search(query).total == 1, query
    # a sub-technique query does not match its parent; no signature → no ATT&CK indexed
    assert store.search("attack:T1059.001").total == 0
    assert store.search("attack:T9999").total == 0
    rows = store.sql("SELECT techniques, tactics FROM events WHERE detection").rows
    assert rows == [(["T1059.004", "T1140"], ["execution", "defense-evasion"])]


def test_duckdb_file_without_attack_columns_gets_them(tmp_path: Path) -> None:
    import duckdb

    from index.tables import EVENT_COLUMNS, Tables

    path = tmp_path / "events.duckdb"
    old = [c for c in EVENT_COLUMNS if c[0] not in ("techniques", "tactics")]
    con = duckdb.connect(str(path))
    con.execute(f"CREATE TABLE events ({', '.join(f'{n} {d}' for n, d in old)})")
    con.close()
    tables = Tables(path)
    try:
        cols = [r[0] for r in tables.sql("DESCRIBE events").rows]
        assert cols == [name for name, _ in EVENT_COLUMNS]
    finally:
        tables.close()
