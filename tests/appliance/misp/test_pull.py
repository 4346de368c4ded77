"""IoC pull: full sync with paging, incremental Q1/Q2, removals, mapping, warninglists, 429."""

from __future__ import annotations

import pytest

from appliance.misp import MispRateLimited
from tests.fakemisp import FakeMisp

from .conftest import Clock, MakeSync, seed_event

SHA = "a" * 64
MD5 = "b" * 32


def values(sync) -> set[tuple[str, str]]:
    return {(i.type, i.value) for i in sync.sink.by_source["misp"]}


def test_full_sync_pages_through_three_pages(fake: FakeMisp, make_sync: MakeSync) -> None:
    seed_event(
        fake,
        [
            ("sha256", SHA),
            ("md5", MD5),
            ("domain", "evil.example"),
            ("ip-dst", "203.0.113.7"),
            ("hostname", "c2.evil.example"),
        ],
    )
    sync = make_sync(page_limit=2)
    result = sync.pull_iocs()
    assert result.full and result.total_attributes == 5
    searches = fake.requests_to("/attributes/restSearch")
    # pages until an empty page: a short page is not the last one in real MISP (warninglists)
    assert [r.body["page"] for r in searches] == [1, 2, 3, 4]
    assert {r.body["order"] for r in searches} == {"Attribute.id ASC"}
    body = searches[0].body
    assert body["to_ids"] == 1 and body["published"] is True and body["limit"] == 2
    assert body["enforceWarninglist"] == 1 and body["includeEventUuid"] == 1
    assert "deleted" not in body
    assert values(sync) == {
        ("sha256", SHA),
        ("md5", MD5),
        ("domain", "evil.example"),
        ("ip-dst", "203.0.113.7"),
        ("hostname", "c2.evil.example"),
    }
    ioc = next(i for i in sync.sink.by_source["misp"] if i.type == "sha256")
    with fake.lock:
        attr = fake.model.attribute_by_uuid(ioc.uuid)
        assert ioc.guuid == fake.model.events[attr.event_id].uuid
    assert ioc.source == "misp"


def test_unpublished_and_non_ids_are_not_pulled(fake: FakeMisp, make_sync: MakeSync) -> None:
    seed_event(fake, [("sha256", SHA)], published=False)
    seed_event(fake, [("md5", MD5)], to_ids=False)
    sync = make_sync()
    assert sync.pull_iocs().total_iocs == 0


def test_composites_split_and_filename_half_opt_in(fake: FakeMisp, make_sync: MakeSync) -> None:
    seed_event(fake, [("filename|sha256", f"Evil.EXE|{SHA.upper()}")])
    sync = make_sync()
    sync.pull_iocs()
    assert values(sync) == {("sha256", SHA)}
    sync.update_settings({"ioc_types": ["filename|sha256", "filename"]})
    sync.pull_iocs()
    got = sync.sink.by_source["misp"]
    assert {(i.type, i.value) for i in got} == {("sha256", SHA), ("filename", "evil.exe")}
    assert len({i.uuid for i in got}) == 2  # the manager's IoC table is keyed by uuid


def test_warninglist_and_cidr(fake: FakeMisp, make_sync: MakeSync) -> None:
    seed_event(
        fake,
        [
            ("ip-dst", "8.8.8.8"),
            ("ip-dst", "198.51.100.0/24"),
            ("ip-dst", "198.51.100.9/32"),
            ("domain", "google.com"),
        ],
    )
    sync = make_sync()
    sync.pull_iocs()
    assert values(sync) == {("ip-dst", "198.51.100.9")}


def test_incremental_sees_new_removed_deleted_and_late_published(
    fake: FakeMisp, make_sync: MakeSync, clock: Clock
) -> None:
    ev = seed_event(fake, [("sha256", SHA), ("md5", MD5), ("domain", "gone.example")])
    sync = make_sync(pull_interval=60.0)
    sync.pull_iocs()
    assert len(values(sync)) == 3
    clock.advance(3600)
    with fake.lock:
        m = fake.model
        new = m.create_attribute(ev.id, "hostname", "new.evil.example")
        m.update_attribute(m.attribute_by_uuid(_uuid(sync, MD5)).uuid, to_ids=False)
        m.update_attribute(_uuid(sync, "gone.example"), deleted=True)
        m.publish(ev.id)
        # An event whose attributes are older than the cursor, published only now (Q2).
        clock.advance(-7200)
        late = m.create_event("late")
        m.create_attribute(late.id, "sha1", "c" * 40)
        clock.advance(7200 + 10)
        m.publish(late.id)
    cursor, event_cursor = sync.iocs.cursor, sync.iocs.event_cursor
    seen = len(fake.requests_to("/attributes/restSearch"))
    result = sync.pull_iocs()
    assert result is not None and not result.full
    assert values(sync) == {("sha256", SHA), ("hostname", "new.evil.example"), ("sha1", "c" * 40)}
    q1, q2, removals, q3 = [
        r.body for r in fake.requests_to("/attributes/restSearch")[seen:] if r.body["page"] == 1
    ]
    assert cursor is not None and event_cursor is not None
    assert isinstance(q1["timestamp"], int) and isinstance(q2["publish_timestamp"], int)
    assert q1["timestamp"] == removals["timestamp"] == cursor - 300
    # publish and event edits follow MISP's clock (the Date header), not attribute timestamps
    assert q2["publish_timestamp"] == q3["event_timestamp"] == event_cursor - 300
    assert "published" not in removals and q1["published"] is True
    for q in (q1, q2, removals, q3):
        assert q["deleted"] == [0, 1] and "to_ids" not in q
    assert new.uuid in {i.uuid for i in sync.sink.by_source["misp"]}


def _uuid(sync, value: str) -> str:
    return next(i.uuid for i in sync.sink.by_source["misp"] if i.value == value)


def test_full_resync_at_start_and_daily_catches_hard_deletes(
    fake: FakeMisp, make_sync: MakeSync, clock: Clock
) -> None:
    ev = seed_event(fake, [("sha256", SHA)])
    seed_event(fake, [("md5", MD5)])
    sync = make_sync()
    assert sync.pull_iocs().full
    with fake.lock:
        fake.model.delete_event(ev.id)
    clock.advance(600)
    assert not sync.pull_iocs().full  # incremental: hard deletes are invisible
    assert ("sha256", SHA) in values(sync)
    clock.advance(86400)
    assert sync.pull_iocs().full  # daily
    assert values(sync) == {("md5", MD5)}
    with fake.lock:
        fake.model.delete_event(next(iter(fake.model.events)))
    restarted = make_sync()  # state survives the restart; the first pull is a full one
    assert restarted.iocs.cursor == sync.iocs.cursor and restarted.status()["pull"]["iocs"] == 1
    assert restarted.pull_iocs().full
    assert values(restarted) == set()


def test_rate_limited_pull_backs_off_until_reset(
    fake: FakeMisp, make_sync: MakeSync, clock: Clock
) -> None:
    seed_event(fake, [("sha256", SHA)])
    sync = make_sync()
    fake.inject("429", "/attributes/restSearch", times=1, reset_after=900)
    with pytest.raises(MispRateLimited) as info:
        sync.pull_iocs()
    assert info.value.retry_after == 900
    sync.run_pending()  # inside the back-off window: no request
    assert len(fake.requests_to("/attributes/restSearch")) == 1
    assert "rate limited" in sync.status()["pull"]["last_error"]
    clock.advance(901)
    sync.run_pending()
    assert values(sync) == {("sha256", SHA)}
    assert sync.status()["pull"]["last_error"] == ""


def test_changed_filters_force_a_full_sync(fake: FakeMisp, make_sync: MakeSync) -> None:
    seed_event(fake, [("sha256", SHA), ("domain", "evil.example")], tags=["tlp:white"])
    seed_event(fake, [("md5", MD5)], tags=["tlp:red"])
    sync = make_sync()
    sync.pull_iocs()
    assert len(values(sync)) == 3
    sync.update_settings({"ioc_types": ["sha256", "md5", "domain"], "tags": ["!tlp:red"]})
    assert sync.iocs.full_due()
    sync.pull_iocs()
    assert values(sync) == {("sha256", SHA), ("domain", "evil.example")}
    assert fake.requests_to("/attributes/restSearch")[-1].body["tags"] == ["!tlp:red"]
    sync.update_settings({"categories": ["Network activity"], "tags": []})
    sync.pull_iocs()
    assert values(sync) == {("domain", "evil.example")}
    assert fake.requests_to("/attributes/restSearch")[-1].body["category"] == ["Network activity"]
