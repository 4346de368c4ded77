"""Sightings: local match, one batched request, TTL, retries, durability across restarts."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.misp import MispUnavailable
from tests.fakemisp import FakeMisp

from .conftest import Clock, MakeSync, seed_event

SHA = "a" * 64
EP = {"uuid": "5a1e8b4c-0000-4000-8000-000000000001", "hostname": "WIN-HOST01"}
SOURCE = f"{EP['uuid']}|{EP['hostname']}"


def sysmon(**data: str) -> dict[str, Any]:
    return {
        "Event": {
            "System": {
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "EventID": 1,
                "TimeCreated": {"SystemTime": "2026-11-28T07:59:00.123456Z"},
            },
            "EventData": data,
        }
    }


@pytest.fixture
def synced(fake: FakeMisp, make_sync: MakeSync) -> Any:
    seed_event(fake, [("sha256", SHA), ("domain", "evil.example"), ("ip-dst", "203.0.113.7")])
    sync = make_sync()
    sync.pull_iocs()
    return sync


def sightings(fake: FakeMisp) -> list[tuple[str, str]]:
    with fake.lock:
        return [
            (fake.model.attributes[s.attribute_id].value, s.source) for s in fake.model.sightings
        ]


def test_hits_give_one_batched_request(fake: FakeMisp, synced: Any) -> None:
    events = [
        sysmon(Hashes=f"MD5={'1' * 32},SHA256={SHA.upper()}", Image="C:\\x.exe"),
        sysmon(QueryName="www.cdn.evil.example", QueryResults="::ffff:203.0.113.7;"),
        sysmon(DestinationIp="192.0.2.1", Image="C:\\benign.exe"),
    ]
    synced.on_events(EP, events)
    result = synced.flush_sightings()
    assert result.requests == 1 and result.sent_values == 3
    (req,) = fake.requests_to("/sightings/add")
    assert req.body == {
        "values": sorted([SHA, "evil.example", "203.0.113.7"]),
        "source": SOURCE,
        "type": "0",
        "timestamp": 1795852740,
        # every pull filter: the sighting lands only on attributes Heron pulled
        "filters": {
            "to_ids": 1,
            "type": list(synced.settings.ioc_types),
            "published": 1,
            "enforceWarninglist": 1,
        },
    }
    assert sorted(sightings(fake)) == sorted(
        [(SHA, SOURCE), ("evil.example", SOURCE), ("203.0.113.7", SOURCE)]
    )
    assert synced.status()["sightings"]["sent"] == 3


def test_non_ioc_values_are_never_sent(fake: FakeMisp, synced: Any) -> None:
    synced.on_events(EP, [sysmon(Image="C:\\Windows\\notepad.exe", QueryName="example.org")])
    assert synced.flush_sightings().requests == 0
    assert fake.requests_to("/sightings/add") == []


def test_ttl_deduplicates_then_resends(fake: FakeMisp, synced: Any, clock: Clock) -> None:
    synced.on_events(EP, [sysmon(Hashes=f"SHA256={SHA}")])
    synced.flush_sightings()
    clock.advance(30)
    synced.on_events(EP, [sysmon(Hashes=f"SHA256={SHA}")])
    assert synced.flush_sightings().requests == 0
    other = {"uuid": "5a1e8b4c-0000-4000-8000-000000000002", "hostname": "WIN-HOST02"}
    synced.on_events(other, [sysmon(Hashes=f"SHA256={SHA}")])  # another source is not deduped
    assert synced.flush_sightings().requests == 1
    clock.advance(31)
    synced.on_events(EP, [sysmon(Hashes=f"SHA256={SHA}")])
    assert synced.flush_sightings().requests == 1
    assert len(fake.requests_to("/sightings/add")) == 3


def test_batch_delay_collects_hits(fake: FakeMisp, make_sync: MakeSync, clock: Clock) -> None:
    seed_event(fake, [("sha256", SHA), ("domain", "evil.example")])
    sync = make_sync(sighting_batch_delay=2.0)
    sync.pull_iocs()
    sync.on_events(EP, [sysmon(Hashes=f"SHA256={SHA}")])
    sync.run_pending()
    assert fake.requests_to("/sightings/add") == []
    clock.advance(1)
    sync.on_events(EP, [sysmon(QueryName="evil.example")])
    clock.advance(1.5)
    sync.run_pending()
    (req,) = fake.requests_to("/sightings/add")
    assert req.body["values"] == sorted([SHA, "evil.example"])


def test_no_match_is_not_retried(fake: FakeMisp, synced: Any) -> None:
    with fake.lock:  # the IoC vanished from MISP after our pull
        fake.model.attributes.clear()
    synced.on_events(EP, [sysmon(Hashes=f"SHA256={SHA}")])
    result = synced.flush_sightings()
    assert result.unmatched_values == 1 and result.pending_batches == 0
    assert synced.flush_sightings().requests == 0


def test_server_errors_are_retried_a_bounded_number_of_times(
    fake: FakeMisp, make_sync: MakeSync, clock: Clock
) -> None:
    seed_event(fake, [("sha256", SHA)])
    sync = make_sync(sighting_max_attempts=3)
    sync.pull_iocs()
    fake.inject("500", "/sightings/add")
    sync.on_events(EP, [sysmon(Hashes=f"SHA256={SHA}")])
    for _ in range(2):
        # a 5xx is this batch's error: it is retried, and the stream does not back off
        assert sync.flush_sightings().pending_batches == 1  # type: ignore[union-attr]
        assert sync.client.ready()
        clock.advance(61)
    result = sync.flush_sightings()
    assert result is not None
    assert result.dropped_values == 1 and result.pending_batches == 0
    assert len(fake.requests_to("/sightings/add")) == 3
    status = sync.status()
    assert status["sightings"]["dropped"] == 1 and status["dead_letters"]["sightings"] == 1


def test_down_queue_survives_restart_and_sends_once(
    fake: FakeMisp, make_sync: MakeSync, clock: Clock
) -> None:
    seed_event(fake, [("sha256", SHA), ("domain", "evil.example")])
    sync = make_sync()
    sync.pull_iocs()
    fake.stop()
    sync.on_events(EP, [sysmon(Hashes=f"SHA256={SHA}")])
    for _ in range(3):  # while down: queued, retried, never lost, never raises from run_pending
        sync.run_pending()
        clock.advance(61)
    with pytest.raises(MispUnavailable):
        sync.flush_sightings()
    assert sync.status()["sightings"]["queued_batches"] == 1
    sync.close()
    restarted = make_sync()  # a manager restart while MISP is still down
    restarted.on_events(EP, [sysmon(Hashes=f"SHA256={SHA}")])  # within TTL: not queued again
    restarted.on_events(EP, [sysmon(QueryName="evil.example")])
    fake.start()
    clock.advance(61)
    restarted.run_pending()
    assert sorted(v for v, _ in sightings(fake)) == sorted([SHA, "evil.example"])
    assert len(fake.requests_to("/sightings/add")) == 1
    again = make_sync()
    again.run_pending()
    assert len(fake.requests_to("/sightings/add")) == 1
    assert again.status()["sightings"]["queued_batches"] == 0


def test_slow_misp_times_out_and_keeps_the_batch(
    fake: FakeMisp, make_sync: MakeSync, clock: Clock
) -> None:
    seed_event(fake, [("sha256", SHA)])
    sync = make_sync(read_timeout=1.0)
    sync.pull_iocs()
    fake.inject("slow", "/sightings/add", times=1, delay=2.5)
    sync.on_events(EP, [sysmon(Hashes=f"SHA256={SHA}")])
    with pytest.raises(MispUnavailable):
        sync.flush_sightings()
    clock.advance(11)
    assert sync.flush_sightings().sent_values == 1


def test_disabled_sightings_queue_nothing(fake: FakeMisp, make_sync: MakeSync) -> None:
    seed_event(fake, [("sha256", SHA)])
    sync = make_sync(sightings_enabled=False)
    sync.pull_iocs()
    sync.on_events(EP, [sysmon(Hashes=f"SHA256={SHA}")])
    assert sync.status()["sightings"]["queued_batches"] == 0


def test_opt_in_types_match_like_agents_and_sight_the_misp_value(
    fake: FakeMisp, make_sync: MakeSync
) -> None:
    key = "HKEY_LOCAL_MACHINE\\Software\\Microsoft\\Windows\\CurrentVersion\\Run"
    with fake.lock:
        ev = fake.model.create_event("persistence")
        fake.model.create_attribute(ev.id, "regkey", key)
        fake.model.create_attribute(
            ev.id, "named pipe", "\\\\.\\pipe\\msse-1234-server", to_ids=True
        )
        fake.model.create_attribute(ev.id, "filename", "C:\\Users\\Public\\evil.dll")
        fake.model.publish(ev.id)
    sync = make_sync(ioc_types=["regkey", "named pipe", "filename"])
    assert sync.pull_iocs().total_iocs == 3
    sync.on_events(
        EP,
        [
            sysmon(TargetObject="HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\updater"),
            sysmon(PipeName="\\MSSE-1234-server"),
            sysmon(ImageLoaded="c:\\users\\public\\EVIL.dll"),
        ],
    )
    sync.flush_sightings()
    (req,) = fake.requests_to("/sightings/add")
    assert req.body["values"] == sorted(
        [key, "\\\\.\\pipe\\msse-1234-server", "C:\\Users\\Public\\evil.dll"]
    )
    assert len(sightings(fake)) == 3


def test_queue_is_bounded_oldest_dropped(fake: FakeMisp, make_sync: MakeSync, clock: Clock) -> None:
    seed_event(fake, [("sha256", SHA), ("domain", "evil.example"), ("ip-dst", "203.0.113.7")])
    sync = make_sync(sighting_queue_max=2)
    sync.pull_iocs()
    fake.stop()
    for data in (
        {"Hashes": f"SHA256={SHA}"},
        {"QueryName": "evil.example"},
        {"DestinationIp": "203.0.113.7"},
    ):
        sync.on_events(EP, [sysmon(**data)])
    status = sync.status()["sightings"]
    assert status["queued_batches"] == 2 and status["dropped"] == 1
    fake.start()
    clock.advance(61)
    sync.flush_sightings()
    assert sorted(v for v, _ in sightings(fake)) == sorted(["evil.example", "203.0.113.7"])


@pytest.mark.parametrize(
    "overrides,wanted",
    [
        ({}, True),
        ({"sightings_enabled": False}, False),
        ({"enabled": False}, False),
        ({"api_key": ""}, False),
    ],
)
def test_wants_events_only_when_sightings_would_be_sent(
    make_sync: MakeSync, overrides: dict[str, Any], wanted: bool
) -> None:
    assert make_sync(**overrides).wants_events() is wanted


def test_wants_events_follows_settings_and_gates_the_ingest_dispatcher(
    make_sync: MakeSync,
) -> None:
    import threading

    from appliance.services.ingest import ListenerDispatcher

    sync = make_sync(enabled=False)
    dispatcher = ListenerDispatcher()
    dispatcher.listeners.append(sync.on_events)  # as MispExtension registers it
    prepared = threading.Event()
    try:
        dispatcher.dispatch(EP, [sysmon(Hashes=f"SHA256={SHA}")], prepared.set)  # type: ignore[arg-type]
        dispatcher.join()
        assert not prepared.is_set()  # skipped before queueing: no EdrData built
        sync.update_settings({"enabled": True})
        assert sync.wants_events()
        dispatcher.dispatch(EP, [sysmon(Hashes=f"SHA256={SHA}")], prepared.set)  # type: ignore[arg-type]
        dispatcher.join()
        assert prepared.is_set()
        sync.update_settings({"sightings_enabled": False})
        assert not sync.wants_events()
    finally:
        dispatcher.close()
