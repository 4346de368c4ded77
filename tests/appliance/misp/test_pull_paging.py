"""IoC pull against MISP's real paging: short pages after warninglists, failures, 429 budgets."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.misp import MispRateLimited, MispServerError
from tests.fakemisp import FakeMisp

from .conftest import Clock, MakeSync, seed_event


def values(sync: Any) -> set[str]:
    return {i.value for i in sync.sink.by_source["misp"]}


GOOD = ["evil-1.example", "evil-2.example", "evil-3.example", "evil-4.example"]


def seed_with_warninglisted(fake: FakeMisp) -> None:
    # A warninglisted domain before each IoC: with limit 2, every page loses a row after paging.
    attrs = []
    for good, listed in zip(GOOD, ["google.com", "microsoft.com"] * 2, strict=True):
        attrs += [("domain", listed), ("domain", good)]
    seed_event(fake, attrs)


def test_short_pages_after_warninglists_keep_every_ioc(fake: FakeMisp, make_sync: MakeSync) -> None:
    """Point 1: MISP drops warninglisted rows after `limit`; a short page is not the last one."""
    seed_with_warninglisted(fake)
    sync = make_sync(page_limit=2)
    result = sync.pull_iocs()
    assert result is not None and result.full
    assert values(sync) == set(GOOD)  # was 1 of 4: the pull stopped at the first short page
    pages = [r.body["page"] for r in fake.requests_to("/attributes/restSearch")]
    assert pages == [1, 2, 3, 4, 5]  # until the empty page


def test_failed_full_sync_never_shrinks_the_ioc_set(
    fake: FakeMisp, make_sync: MakeSync, clock: Clock
) -> None:
    """Point 1: a full sync that fails half-way keeps the set, then resumes at the page reached."""
    seed_with_warninglisted(fake)
    sync = make_sync(page_limit=2)
    sync.pull_iocs()
    assert values(sync) == set(GOOD)
    fake.inject("500", "/attributes/restSearch", times=1)
    clock.advance(10)
    seen = len(fake.requests_to("/attributes/restSearch"))
    with pytest.raises(MispServerError):
        sync.pull_iocs(full=True)
    assert values(sync) == set(GOOD) and sync.status()["pull"]["iocs"] == 4
    sync.pull_iocs(full=True)
    assert values(sync) == set(GOOD)
    pages = [r.body["page"] for r in fake.requests_to("/attributes/restSearch")[seen:]]
    assert pages == [1, 1, 2, 3, 4, 5]  # page 1 failed, then the resumed pass


def test_rate_limited_full_sync_resumes_at_the_page_reached(
    fake: FakeMisp, make_sync: MakeSync, clock: Clock
) -> None:
    """Point 6: a role allowed 2 searches per 15 min still finishes a 5-page full sync."""
    fake.role.update(enforce_rate_limit=True, rate_limit_count="2")
    seed_event(fake, [("domain", f"evil-{i}.example") for i in range(8)])
    sync = make_sync(page_limit=2)
    for _ in range(2):
        with pytest.raises(MispRateLimited) as caught:
            sync.pull_iocs()
        # X-Rate-Limit-Reset is honoured: the next pull waits for the window to reset
        assert caught.value.retry_after == pytest.approx(900, abs=2)
        assert sync.status()["pull"]["next_run"] >= clock() + 898
        assert sync.status()["pull"]["resume"]["page"] in (3, 5)
        assert sync.status()["rate_limit"]["remaining"] == "0"
        clock.advance(901)
    result = sync.pull_iocs()
    assert result is not None and result.total_iocs == 8
    served = [r.body["page"] for r in fake.requests_to("/attributes/restSearch") if r.status == 200]
    assert served == [1, 2, 3, 4, 5]  # each page read once: no restart at page 1
    assert sync.status()["pull"]["resume"] is None


def test_soft_delete_in_an_unpublished_event_is_removed_at_the_next_pull(
    fake: FakeMisp, make_sync: MakeSync, clock: Clock
) -> None:
    """Point 7: a soft delete unpublishes the event; the removal must not wait for a republish."""
    ev = seed_event(fake, [("domain", "evil.example"), ("domain", "gone.example")])
    sync = make_sync()
    sync.pull_iocs()
    clock.advance(600)
    with fake.lock:
        fake.model.update_attribute(
            fake.model.attribute_by_uuid(
                next(i.uuid for i in sync.sink.by_source["misp"] if i.value == "gone.example")  # type: ignore[attr-defined]
            ).uuid,
            deleted=True,
        )
        assert not fake.model.events[ev.id].published  # MISP unpublished it
    result = sync.pull_iocs()
    assert result is not None and not result.full and result.removed == 1
    assert values(sync) == {"evil.example"}


def test_event_tag_added_later_is_pulled_by_the_event_timestamp_query(
    fake: FakeMisp, make_sync: MakeSync, clock: Clock
) -> None:
    """Point 7: tagging an event changes which attributes pass `tags` without touching their
    timestamps: only `event_timestamp` sees it (all-events mode has no publish query)."""
    tagged = seed_event(fake, [("domain", "tagged.example")], tags=["heron"])
    later = seed_event(fake, [("domain", "later.example")])
    clock.advance(3600)  # the cursor moves past later.example's timestamp
    with fake.lock:
        fake.model.create_attribute(tagged.id, "domain", "new.example")
    sync = make_sync(tags=["heron"], published_only=False)
    sync.pull_iocs()
    assert values(sync) == {"tagged.example", "new.example"}
    clock.advance(600)
    with fake.lock:
        fake.model.tag_event(later.id, "heron")
    result = sync.pull_iocs()
    assert result is not None and not result.full
    assert values(sync) == {"tagged.example", "new.example", "later.example"}


def test_pull_filters_by_org_threat_level_distribution_decay_and_start_date(
    fake: FakeMisp, make_sync: MakeSync, clock: Clock
) -> None:
    """What users of other MISP integrations expect: org, threat level, distribution, decay,
    a start date; sightings then use the same filters."""
    with fake.lock:
        m = fake.model
        old = m.create_event("old", threat_level_id="1")
        m.create_attribute(old.id, "domain", "old.example")
        m.publish(old.id)
    clock.advance(3 * 86400)  # 2026-12-01
    for info, kw, value in (
        ("keep", {"threat_level_id": "1", "distribution": "1"}, "keep.example"),
        ("other org", {"threat_level_id": "1", "orgc": "CIRCL"}, "circl.example"),
        ("low", {"threat_level_id": "3"}, "low.example"),
        ("org only", {"threat_level_id": "1", "distribution": "0"}, "orgonly.example"),
        ("decayed", {"threat_level_id": "1", "distribution": "1"}, "decayed.example"),
    ):
        with fake.lock:
            ev = fake.model.create_event(info, **kw)  # type: ignore[arg-type]
            a = fake.model.create_attribute(ev.id, "domain", value)
            a.decayed = value.startswith("decayed")
            fake.model.publish(ev.id)
    sync = make_sync(
        orgs=["ORGNAME"],
        threat_levels=["1", "2"],
        distributions=["1", "2", "3"],
        exclude_decayed=True,
        pull_since="2026-11-30",
    )
    sync.pull_iocs()
    assert values(sync) == {"keep.example"}
    body = fake.requests_to("/attributes/restSearch")[0].body
    assert body["org"] == ["ORGNAME"] and body["threat_level_id"] == ["1", "2"]
    assert body["excludeDecayed"] == 1 and body["timestamp"] == 1795996800  # 2026-11-30T00:00Z


def test_expiration_sighting_expires_the_ioc(
    fake: FakeMisp, make_sync: MakeSync, clock: Clock
) -> None:
    """MISP "expiration" sightings (type 2): users expect the IoC to leave the agents."""
    seed_event(fake, [("domain", "evil.example"), ("domain", "stale.example")])
    sync = make_sync(expire_on_sighting=True)
    sync.pull_iocs()
    assert values(sync) == {"evil.example", "stale.example"}
    with fake.lock:  # an analyst marks stale.example as expired as of now
        fake.model.add_sightings(
            {"values": ["stale.example"], "type": "2", "source": "analyst"}, None
        )
    clock.advance(60)
    sync.pull_iocs(full=True)
    assert values(sync) == {"evil.example"}
    assert fake.requests_to("/attributes/restSearch")[-1].body["includeSightings"] == 1


def test_too_many_pages_is_partial_and_keeps_the_set(
    fake: FakeMisp, make_sync: MakeSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Point 1: a full sync that cannot read every page never replaces the set."""
    from appliance.misp import iocs

    seed_event(fake, [("domain", "a.example"), ("domain", "b.example"), ("domain", "c.example")])
    sync = make_sync(page_limit=1)
    sync.pull_iocs()
    assert values(sync) == {"a.example", "b.example", "c.example"}
    monkeypatch.setattr(iocs, "MAX_PAGES", 2)
    with pytest.raises(iocs.MispPartial, match="pages"):
        sync.pull_iocs(full=True)
    assert values(sync) == {"a.example", "b.example", "c.example"}
    assert sync.status()["pull"]["resume"] is None
