"""The fake MISP itself behaves like MISP (docs/reference/misp.md §1, §2, §3, §4, §8), checked over
raw HTTP."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import requests

from tests.fakemisp import DEFAULT_KEY, FakeMisp

from .conftest import Clock, seed_event

HEADERS = {
    "Authorization": DEFAULT_KEY,
    "Accept": "application/json",
    "Content-Type": "application/json",
}
TEMPLATE = "eeeca35c-cfcb-49f9-81be-e0c31d83c116"


def post(fake: FakeMisp, path: str, body: Any, **headers: str) -> requests.Response:
    return requests.post(fake.url + path, json=body, headers={**HEADERS, **headers}, timeout=5)


def search(fake: FakeMisp, **query: Any) -> tuple[list[dict[str, Any]], requests.Response]:
    r = post(fake, "/attributes/restSearch", {"returnFormat": "json", **query})
    assert r.status_code == 200
    return r.json()["response"]["Attribute"], r


def test_authentication_and_accept_header(fake: FakeMisp) -> None:
    r = requests.get(
        fake.url + "/servers/getVersion", headers={**HEADERS, "Authorization": "x"}, timeout=5
    )
    assert r.status_code == 403 and r.json()["name"].startswith("Authentication failed")
    r = requests.get(
        fake.url + "/servers/getVersion",
        headers={"X-MISP-AUTH": DEFAULT_KEY, "Accept": "application/json"},
        timeout=5,
    )
    assert r.status_code == 200 and r.json()["version"] == "2.5.1"
    r = requests.get(
        fake.url + "/servers/getVersion", headers={"Authorization": DEFAULT_KEY}, timeout=5
    )
    assert r.status_code == 406
    r = requests.head(fake.url + "/events/view/1", headers=HEADERS, timeout=5)
    assert r.status_code == 404 and r.content == b""


def test_rest_search_filters_and_paging(fake: FakeMisp, clock: Clock) -> None:
    ev = seed_event(
        fake,
        [
            ("filename|md5", "a.exe|" + "a" * 32),
            ("sha256", "b" * 64),
            ("domain", "evil.example"),
            ("ip-dst", "8.8.8.8"),
        ],
    )
    with fake.lock:
        quiet = fake.model.create_attribute(ev.id, "md5", "c" * 32, to_ids=False)
        fake.model.publish(ev.id)
    rows, r = search(fake, limit=2, page=2, order="Attribute.id ASC")
    # RestResponseComponent: X-Result-Count counts the rows of this page
    assert r.headers["X-Result-Count"] == "2" and len(rows) == 2
    assert rows[0]["to_ids"] is True and isinstance(rows[0]["id"], str)
    assert "event_uuid" not in rows[0] and rows[0]["Event"]["uuid"] == ev.uuid
    rows, _ = search(fake, value="A" * 32, includeEventUuid=1)  # value2 of a composite
    assert [x["type"] for x in rows] == ["filename|md5"] and rows[0]["event_uuid"] == ev.uuid
    rows, _ = search(fake, type=["!md5", "!filename|md5"], to_ids="1")
    assert {x["type"] for x in rows} == {"sha256", "domain", "ip-dst"}
    rows, _ = search(fake, enforceWarninglist=True)
    assert "8.8.8.8" not in {x["value"] for x in rows}
    rows, _ = search(fake, to_ids=0)
    assert [x["uuid"] for x in rows] == [quiet.uuid]
    rows, _ = search(fake, timestamp="5d")
    assert len(rows) == 5
    rows, _ = search(fake, timestamp="not a time")  # MISP: now+1, silently nothing
    assert rows == []
    rows, _ = search(fake, published=0)
    assert rows == []
    rows, _ = search(fake, includeDecayScore=1, eventid=ev.uuid, limit=1)
    assert rows[0]["decay_score"][0]["score"] == 42.1
    assert search(fake, eventid=[str(ev.id + 1)])[0] == []


def test_deleted_and_publish_timestamp(fake: FakeMisp, clock: Clock) -> None:
    ev = seed_event(fake, [("md5", "a" * 32), ("md5", "b" * 32)])
    with fake.lock:
        gone = fake.model.attribute_by_uuid(fake.model.attributes[1].uuid)
        fake.model.update_attribute(gone.uuid, deleted=True)
    assert [x["value"] for x in search(fake)[0]] == ["b" * 32]
    assert [x["value"] for x in search(fake, deleted=1)[0]] == ["a" * 32]
    assert len(search(fake, deleted=[0, 1])[0]) == 2
    assert search(fake, published=1)[0] == []  # the soft delete unpublished the event
    clock.advance(100)
    with fake.lock:
        fake.model.publish(ev.id)
    assert len(search(fake, publish_timestamp=int(clock.now) - 10)[0]) == 1
    assert search(fake, publish_timestamp=int(clock.now) + 10)[0] == []


def test_unknown_parameters_and_values_are_recorded(fake: FakeMisp) -> None:
    search(fake, typo_param=1, type=["sha256", "no-such-type"], to_ids="maybe")
    assert fake.warnings == ["/attributes/restSearch: unknown parameter 'typo_param'"]
    assert fake.violations == [
        "restSearch: unknown type 'no-such-type'",
        "restSearch: to_ids='maybe' is not boolean",
    ]
    with fake.lock:
        fake.model.violations.clear()
        fake._state.warnings.clear()


def test_sightings_semantics(fake: FakeMisp) -> None:
    seed_event(fake, [("md5", "a" * 32)])
    seed_event(fake, [("md5", "a" * 32)], to_ids=False)
    r = post(fake, "/sightings/add", {"values": [], "source": "x"})
    assert r.status_code == 200 and r.json()["message"].endswith("No valid attributes found.")
    r = post(fake, "/sightings/add", {"values": ["zz"], "source": "x", "filters": {"to_ids": 1}})
    assert r.json()["message"].endswith("that match the criteria.")
    r = post(
        fake,
        "/sightings/add",
        {
            "values": ["A" * 32],
            "source": " s|h ",
            "type": "0",
            "filters": {"to_ids": 1},
            "timestamp": 1795846845,
        },
    )
    s = r.json()["Sighting"]
    assert s["source"] == "s|h" and s["date_sighting"] == "1795846845"
    with fake.lock:
        assert len(fake.model.sightings) == 1  # only the IDS one
    post(fake, "/sightings/add", {"value": "a" * 32, "source": "y"})  # no filters: every match
    with fake.lock:
        assert len(fake.model.sightings) == 3
        target = fake.model.attributes[2].uuid
    r = post(fake, f"/sightings/add/{target}", {"source": "z", "type": "1"})
    assert r.json()["Sighting"]["type"] == "1"
    r = post(fake, "/sightings/add", {"values": ["a" * 32], "type": "7"})
    assert r.json()["message"].startswith("Invalid type")


def _object(**overrides: Any) -> dict[str, Any]:
    obj = {
        "name": "edr-report",
        "meta-category": "misc",
        "template_uuid": TEMPLATE,
        "template_version": "1",
        "description": "x",
        "uuid": "6f0d1c66-0000-4000-8000-0000000000aa",
        "distribution": "5",
        "sharing_group_id": "0",
        "Attribute": [
            {
                "object_relation": "id",
                "type": "text",
                "value": "f00d",
                "category": "Other",
                "to_ids": False,
            },
            {
                "object_relation": "event",
                "type": "attachment",
                "value": "event.json",
                "data": base64.b64encode(b"{}").decode(),
                "category": "External analysis",
            },
        ],
    }
    obj.update(overrides)
    return obj


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        (
            [{"object_relation": "hostname", "type": "text", "value": "h"}],
            "requires at least one of the following attributes: id, endpoint-id, event",
        ),
        (
            [
                {"object_relation": "id", "type": "text", "value": "a"},
                {"object_relation": "id", "type": "text", "value": "b"},
            ],
            "is not multiple",
        ),
        (
            [{"object_relation": "id", "type": "ip-src", "value": "192.0.2.1"}],
            "Invalid attribute type 'ip-src' for object relation id",
        ),
        (
            [{"object_relation": "event", "type": "attachment", "value": "e.json"}],
            "attachment without data",
        ),
        ([{"object_relation": "nope", "type": "text", "value": "x"}], "Invalid object relation"),
    ],
    ids=["required-one-of", "multiple", "type", "attachment-data", "relation"],
)
def test_objects_add_template_conformity(
    fake: FakeMisp, attrs: list[dict[str, Any]], reason: str
) -> None:
    ev = seed_event(fake, [])
    r = post(fake, f"/objects/add/{ev.uuid}", _object(Attribute=attrs))
    assert r.status_code == 403
    body = r.json()
    assert body["saved"] is False and body["name"] == "Could not add Object"
    assert reason in body["errors"]


def test_objects_add_and_events(fake: FakeMisp, clock: Clock) -> None:
    r = post(fake, "/events/add", {"Event": {"distribution": "0"}})
    assert r.status_code == 403 and "Info cannot be empty." in str(r.json()["errors"])
    day = "8b2b5f0e-0000-5000-8000-000000000001"
    r = post(fake, "/events/add", {"uuid": day, "info": "day", "Tag": [{"name": "tlp:amber"}]})
    assert r.status_code == 200 and r.json()["Event"]["Tag"][0]["name"] == "tlp:amber"
    r = post(fake, "/events/add", {"uuid": day, "info": "day"})
    assert r.status_code == 404 and r.json()["name"].startswith("Event already exists")
    assert r.headers["Location"] == "/events/view/1"
    # the stock User role lacks perm_publish (ACLComponent → 403)
    assert post(fake, f"/events/publish/{day}", None).status_code == 403
    fake.role["perm_publish"] = True
    assert post(fake, f"/events/publish/{day}", None).json()["name"] == "Job queued"
    r = post(fake, f"/objects/add/{day}/breakOnDuplicate:1", _object())
    assert r.status_code == 200
    obj = r.json()["Object"]
    assert obj["comment"] == "" and obj["deleted"] is False and len(obj["Attribute"]) == 2
    r = post(fake, f"/objects/add/{day}", _object())
    assert r.status_code == 403 and r.json()["errors"] == "The UUID provided is not unique"
    view = requests.get(f"{fake.url}/events/view/{day}", headers=HEADERS, timeout=5).json()
    assert view["Event"]["published"] is False and len(view["Event"]["Object"]) == 1
    assert post(fake, "/objects/add/999", _object()).status_code == 404
    rows, _ = search(fake, withAttachments=1, type="attachment")
    assert base64.b64decode(rows[0]["data"]) == b"{}"


def test_faults(fake: FakeMisp) -> None:
    fake.inject("429", "/attributes/restSearch", times=1, reset_after=60)
    r = post(fake, "/attributes/restSearch", {"returnFormat": "json"})
    assert r.status_code == 429 and r.headers["X-Rate-Limit-Reset"] == "60"
    fake.inject("429", "", times=1)  # RateLimitComponent limits restSearch only
    assert post(fake, "/sightings/add", {"values": ["x"]}).status_code == 200
    fake.clear_faults()
    fake.inject("500", "/events/add", times=1)
    assert post(fake, "/events/add", {"info": "x"}).status_code == 500
    assert post(fake, "/events/add", {"info": "x"}).status_code == 200
    with pytest.raises(ValueError):
        fake.inject("teapot")
    r = post(fake, "/warninglists/checkValue", ["8.8.8.8", "203.0.113.1"])
    assert list(r.json()) == ["8.8.8.8"]
