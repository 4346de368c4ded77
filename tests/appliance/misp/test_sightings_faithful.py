"""Sightings against MISP's real /sightings/add: every pull filter, 200-with-error, value lookup."""

from __future__ import annotations

from typing import Any

from tests.fakemisp import FakeMisp

from .conftest import Clock, MakeSync, seed_event

EP = {"uuid": "5a1e8b4c-0000-4000-8000-000000000001", "hostname": "WIN-HOST01"}
SHA = "a" * 64


def sysmon(**data: str) -> dict[str, Any]:
    return {
        "Event": {
            "System": {
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "EventID": 1,
                "TimeCreated": {"SystemTime": "2026-11-28T07:59:00Z"},
            },
            "EventData": data,
        }
    }


def sighted(fake: FakeMisp) -> list[tuple[str, int]]:
    with fake.lock:
        return [
            (fake.model.attributes[s.attribute_id].value, s.event_id) for s in fake.model.sightings
        ]


def test_sightings_land_only_on_attributes_that_pass_every_pull_filter(
    fake: FakeMisp, make_sync: MakeSync
) -> None:
    """Point 8: the same value in an event excluded by the tag filter is not sighted."""
    pulled = seed_event(fake, [("sha256", SHA)], tags=["heron"])
    seed_event(fake, [("sha256", SHA)])  # another event, not tagged: Heron never pulled it
    seed_event(fake, [("sha256", SHA)], tags=["heron"], published=False)  # unpublished
    sync = make_sync(tags=["heron"])
    sync.pull_iocs()
    sync.on_events(EP, [sysmon(Hashes=f"SHA256={SHA}")])
    result = sync.flush_sightings()
    assert result is not None and result.sent_values == 1
    assert sighted(fake) == [(SHA, pulled.id)]
    # requests are paged in a stable order, and each page's X-Result-Count is that page's
    search = fake.requests_to("/attributes/restSearch")[0]
    assert search.body["order"] == "Attribute.id ASC"


def test_sighting_errors_answered_with_200_are_not_counted_as_sent(
    fake: FakeMisp, make_sync: MakeSync
) -> None:
    """Point 8: SightingsController answers failures with HTTP 200 and a message."""
    seed_event(fake, [("sha256", SHA)])
    sync = make_sync()
    sync.pull_iocs()
    fake.inject("error200", "/sightings/add", times=1)
    sync.on_events(EP, [sysmon(Hashes=f"SHA256={SHA}")])
    result = sync.flush_sightings()
    assert result is not None and result.sent_values == 0 and result.dropped_values == 1
    status = sync.status()
    assert status["sightings"]["sent"] == 0 and status["dead_letters"]["sightings"] == 1
    (dead,) = sync.dead_letters("sightings")
    assert "Could not add the Sighting" in dead["error"] and dead["item"]["values"] == [SHA]
    assert sync.retry_dead_letters() == 1
    result = sync.flush_sightings()
    assert result is not None and result.sent_values == 1 and sighted(fake) == [(SHA, 1)]


def test_value_lookup_sights_types_that_are_not_pulled(
    fake: FakeMisp, make_sync: MakeSync, clock: Clock
) -> None:
    """Point 11: a MISP regkey, filename or pipe is sighted by looking the value up (opt-in)."""
    ev = seed_event(
        fake,
        [
            ("sha256", SHA),
            ("regkey", "HKEY_LOCAL_MACHINE\\Software\\Evil\\Run"),
            ("filename", "evil-dropper.exe"),
        ],
    )
    sync = make_sync(sighting_lookup=True, sighting_lookup_per_minute=1)
    sync.pull_iocs()
    assert {i.type for i in sync.sink.by_source["misp"]} == {"sha256"}  # type: ignore[attr-defined]
    events = [
        sysmon(TargetObject="HKLM\\SOFTWARE\\Evil\\Run", Image="C:\\Temp\\evil-dropper.exe"),
        sysmon(Image="C:\\Windows\\explorer.exe"),
    ]
    sync.on_events(EP, events)
    result = sync.flush_sightings()
    assert result is not None and result.sent_values == 2
    with fake.lock:
        values = sorted(fake.model.attributes[s.attribute_id].value for s in fake.model.sightings)
    assert values == ["HKEY_LOCAL_MACHINE\\Software\\Evil\\Run", "evil-dropper.exe"]
    assert all(event_id == ev.id for _, event_id in sighted(fake))
    lookups = [r for r in fake.requests_to("/attributes/restSearch") if "value" in (r.body or {})]
    assert len(lookups) == 1  # one batched request for every candidate
    # the answer (hit and miss) is cached: the same values later cost no request
    clock.advance(120)
    sync.on_events(EP, events)
    sync.flush_sightings()
    assert len([r for r in fake.requests_to("/attributes/restSearch") if "value" in r.body]) == 1
    lookup = sync.status()["sightings"]["lookup"]
    assert lookup["requests"] == 1 and lookup["pending"] == 0


def test_value_lookup_is_rate_limited(fake: FakeMisp, make_sync: MakeSync, clock: Clock) -> None:
    seed_event(fake, [("sha256", SHA)])
    sync = make_sync(sighting_lookup=True, sighting_lookup_per_minute=1)
    sync.pull_iocs()
    for n in range(75):  # 150 candidates (path and base name): two batches of 100
        sync.on_events(EP, [sysmon(Image=f"C:\\x\\tool-{n}.exe")])
    sync.flush_sightings()
    assert sync.status()["sightings"]["lookup"]["requests"] == 1
    assert sync.status()["sightings"]["lookup"]["pending"] > 0
    clock.advance(61)
    sync.flush_sightings()
    assert sync.status()["sightings"]["lookup"] == {
        "enabled": True,
        "pending": 0,
        "requests": 2,
        "found": 0,
        "overflow": 0,
    }
