"""The MISP admin routes mounted in the manager's admin app, and the sync wired into ingest."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from appliance.misp.integration import MispExtension
from rules import wire
from rules.iocs import IocSet
from tests.fakemisp import DEFAULT_KEY, FakeMisp
from tests.support.clock import Clock
from tests.support.waiting import wait_for

from .conftest import seed_event, write_artifacts


def _misp(ctx: Any) -> MispExtension:
    misp = ctx.extensions.get(MispExtension)
    assert misp is not None
    return misp


SHA = "d" * 64


@pytest.fixture
def configured(env: Any, fake: FakeMisp) -> Any:
    res = env.a(
        "PUT",
        "/misp/settings",
        json={
            "enabled": True,
            "url": fake.url,
            "api_key": DEFAULT_KEY,
            "sighting_batch_delay": 0.0,
            "read_timeout": 2.0,
            "connect_timeout": 1.0,
        },
    )
    assert res.status_code == 200, res.text
    return env


def test_settings_round_trip_without_the_key(env: Any, fake: FakeMisp) -> None:
    res = env.a("GET", "/misp/settings")
    assert res.status_code == 200 and res.json["error"] == ""
    assert res.json["data"]["enabled"] is False and res.json["data"]["api_key_set"] is False
    res = env.a("PUT", "/misp/settings", json={"url": fake.url, "api_key": DEFAULT_KEY})
    data = res.json["data"]
    assert data["url"] == fake.url and data["api_key_set"] is True and "api_key" not in data
    stored = (env.ctx.data_dir / "misp" / "settings.json").read_text()
    assert DEFAULT_KEY not in stored
    res = env.a("PUT", "/misp/settings", json={"pull_interval": -1, "colour": 1})
    assert res.status_code == 422 and "unknown key at colour" in res.json["error"]
    res = env.a("PUT", "/misp/settings", json={"page_limit": "x"})
    assert res.status_code == 422


def test_roles(env: Any) -> None:
    assert env.a("GET", "/misp/settings", key=env.analyst_key).status_code == 403
    assert env.a("PUT", "/misp/settings", key=env.analyst_key, json={}).status_code == 403
    assert env.a("GET", "/misp/status", key=env.analyst_key).status_code == 200
    assert env.a("POST", "/misp/sync", key=env.plugin_key, json={}).status_code == 403
    assert env.a("GET", "/misp/status", key="nope").status_code == 401


def test_connection_test(configured: Any, fake: FakeMisp) -> None:
    res = configured.a("POST", "/misp/test", json={})
    assert res.json["data"]["ok"] is True and res.json["data"]["version"] == "2.5.1"
    data = res.json["data"]
    # the stock User role cannot create tags: report_tags MISP lacks would be dropped
    assert data["missing_permissions"] == ["perm_tag_editor"]
    assert data["permissions"]["perm_publish"] is False and data["effects"]
    res = configured.a("POST", "/misp/test", json={"api_key": "e" * 40})
    assert res.json["data"]["ok"] is False and "user settings" in res.json["data"]["error"]
    fake.stop()
    res = configured.a("POST", "/misp/test", json={})
    assert res.json["data"]["ok"] is False and res.json["data"]["error"]
    fake.start()


def test_sync_before_configuration_is_a_conflict(env: Any) -> None:
    res = env.a("POST", "/misp/sync", json={"full": True})
    assert res.status_code == 409 and "not configured" in res.json["error"]


def test_end_to_end_ioc_sighting_and_report(
    configured: Any, fake: FakeMisp, clock: Clock, tmp_path: Path
) -> None:
    env = configured
    seed_event(fake, [("sha256", SHA), ("domain", "evil.example")])
    res = env.a("POST", "/misp/sync", json={"full": True})
    assert res.status_code == 200 and res.json["data"]["pull"]["iocs"] == 2
    # The IoCs reach agents through the normal distribution and fire there.
    agent = env.enroll("WIN-HOST01")
    served = env.e("GET", wire.ROUTE_IOCS, agent)
    assert served.status_code == 200, served.text
    iocs = served.json if isinstance(served.json, list) else served.json.get("data", [])
    assert {(i["type"], i["value"], i["source"]) for i in iocs} == {
        ("sha256", SHA, "misp"),
        ("domain", "evil.example", "misp"),
    }
    event = {
        "Event": {
            "System": {
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "EventID": 1,
                "Computer": "WIN-HOST01",
                "TimeCreated": {"SystemTime": "2026-11-28T08:00:00Z"},
            },
            "EventData": {"Image": "C:\\evil.exe", "Hashes": f"SHA256={SHA}"},
        }
    }
    hits = IocSet.from_iocs(iocs).match(event)
    assert [(h.type, h.value) for h in hits] == [("sha256", SHA)]
    # The endpoint reports the event: the sighting shows up in MISP with the endpoint as source.
    event["Event"]["Detection"] = {"Signature": ["IoC:sha256"], "Criticality": 10}
    assert env.post_logs(agent, [event]).status_code == 200
    env.ctx.ingest.dispatcher.join()
    env.a("POST", "/misp/sync", json={})
    with fake.lock:
        rows = [
            (fake.model.attributes[s.attribute_id].value, s.source) for s in fake.model.sightings
        ]
    assert rows == [(SHA, f"{agent.uuid}|WIN-HOST01")]
    # The critical detection's IR report, uploaded by the agent, shows up as an edr-report object.
    local = write_artifacts(
        tmp_path / "agent-side",
        endpoint=agent.uuid,
        files={"evil.exe": ("filedump", b"MZ" + b"\0" * 100)},
    )
    for path in sorted(local.iterdir(), key=lambda p: p.name == "manifest.json"):
        raw = path.read_bytes()
        chunk = wire.UploadChunk(
            filename=path.name,
            guid=local.parent.name,
            event_hash=local.name,
            content=base64.b64encode(raw).decode(),
            chunk=1,
            total=1,
            sha256=hashlib.sha256(raw).hexdigest(),
            size=len(raw),
        )
        res = env.e("POST", wire.ROUTE_UPLOAD_DUMPS, agent, json=chunk.to_dict())
        assert res.status_code == 200, res.text
    status = env.a("POST", "/misp/sync", json={}).json["data"]
    assert status["reports"]["pushed"] == 1, status
    with fake.lock:
        (obj,) = fake.model.objects.values()
        rendered = fake.model.render_object(obj)
    rel = {a["object_relation"]: a["value"] for a in rendered["Attribute"]}
    assert rel["endpoint-id"] == agent.uuid and rel["hostname"] == "WIN-HOST01"
    assert rel["ip"] == "10.0.0.5" and rel["executable"] == "evil.exe.zip"
    status = env.a("GET", "/misp/status").json["data"]
    assert status["sightings"]["sent"] == 1 and status["connected"] is True
    assert json.dumps(status)  # plain JSON


def test_worker_lifecycle_and_idempotent_attach(configured: Any, fake: FakeMisp) -> None:
    ctx = configured.ctx
    misp = ctx.extensions.get(MispExtension)
    assert misp is not None
    sync = misp.default
    assert misp.default is sync
    assert ctx.event_listeners.count(sync.on_events) == 1
    misp.interval = 0.05
    misp.start()
    worker = misp.worker
    misp.start()
    assert worker is not None and misp.worker is worker  # started once
    seed_event(fake, [("sha256", SHA)])
    wait_for(lambda: fake.requests_to("/attributes/restSearch"), 60, "the worker's first pull")
    misp.stop()
    assert misp.worker is None and misp.queued_batches() == 0  # rebuilt on next use


def test_ioc_table_follows_misp_and_keeps_other_sources(
    configured: Any, fake: FakeMisp, clock: Clock
) -> None:
    env = configured
    manual = env.a("POST", "/iocs", json=[{"type": "md5", "value": "f" * 32, "source": "analyst"}])
    assert manual.status_code == 200, manual.text
    seed_event(fake, [("sha256", SHA), ("domain", "evil.example")])
    env.a("POST", "/misp/sync", json={})
    table = env.ctx.store.iocs
    assert {(i.value, i.source) for i in table.list()} == {
        ("f" * 32, "analyst"),
        (SHA, "misp"),
        ("evil.example", "misp"),
    }
    clock.advance(600)
    with fake.lock:
        attr = next(a for a in fake.model.attributes.values() if a.value == "evil.example")
        fake.model.update_attribute(attr.uuid, to_ids=False)
        fake.model.publish(attr.event_id)
    env.a("POST", "/misp/sync", json={})
    assert {(i.value, i.source) for i in table.list()} == {("f" * 32, "analyst"), (SHA, "misp")}


def test_manager_works_while_misp_is_down(configured: Any, fake: FakeMisp) -> None:
    env = configured
    fake.stop()
    agent = env.enroll("WIN-HOST02")
    event = {
        "Event": {
            "System": {
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "EventID": 1,
                "Computer": "WIN-HOST02",
                "TimeCreated": {"SystemTime": "2026-11-28T08:00:00Z"},
            },
            "EventData": {"Image": "C:\\x.exe"},
        }
    }
    assert env.post_logs(agent, [event]).status_code == 200
    env.ctx.ingest.dispatcher.join()
    status = env.a("POST", "/misp/sync", json={}).json["data"]
    assert status["connected"] is False and status["pull"]["last_error"]
    assert env.a("GET", "/misp/status").status_code == 200
    fake.start()


def test_dead_letters_are_listed_retried_and_discarded(
    configured: Any, fake: FakeMisp, tmp_path: Path
) -> None:
    """Point 3: the dead-letter list in the API and the status, retry after fixing the cause."""
    env = configured
    fake.max_body = 1000  # a proxy in front of MISP refuses every report body (HTML 413)
    sync = _misp(env.ctx).default
    for n in (1, 2):
        sync.on_report({"uuid": "ep"}, write_artifacts(tmp_path / "a", event_hash=f"{n:040x}"))
    status = env.a("POST", "/misp/sync", json={}).json["data"]
    assert status["dead_letters"]["reports"] == 2 and status["reports"]["state"] == "ok"
    assert status["next_attempt"] is None  # no global back-off for item errors
    listed = env.a("GET", "/misp/dead-letters", params={"stream": "reports"}).json["data"]
    assert len(listed) == 2 and all("413" in d["error"] for d in listed)
    assert env.a("GET", "/misp/dead-letters", params={"stream": "x"}).status_code == 422
    fake.max_body = None
    res = env.a("POST", "/misp/dead-letters/retry", json={"ids": [listed[0]["id"]]})
    assert res.json["data"] == {"requeued": 1}
    res = env.a("POST", "/misp/dead-letters/discard", json={})
    assert res.json["data"] == {"discarded": 1}
    assert env.a("POST", "/misp/dead-letters/retry", json={"ids": "x"}).status_code == 422
    status = env.a("POST", "/misp/sync", json={}).json["data"]
    assert status["reports"]["pushed"] == 1 and status["dead_letters"]["reports"] == 0


def test_connection_test_reads_every_permission_and_the_rate_limit(
    configured: Any, fake: FakeMisp
) -> None:
    """Point 9: modify, publish, tag creation and the restSearch rate limit are reported."""
    fake.role.update(perm_modify=False, enforce_rate_limit=True, rate_limit_count="50")
    data = configured.a("POST", "/misp/test", json={"report_publish": True}).json["data"]
    assert data["ok"] is True
    assert set(data["missing_permissions"]) == {"perm_modify", "perm_publish", "perm_tag_editor"}
    assert data["permissions"]["perm_tagger"] is True
    assert any("unpublished" in e for e in data["effects"])
    assert data["rate_limit"]["limit"] == "50" and data["rate_limit"]["remaining"] == "49"


def test_false_positive_sends_a_type_1_sighting(configured: Any, fake: FakeMisp) -> None:
    """An analyst closes a detection as a false positive: MISP gets a type-1 sighting."""
    env = configured
    seed_event(fake, [("sha256", SHA)])
    env.a("POST", "/misp/sync", json={"full": True})
    event = {
        "Event": {
            "System": {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1},
            "EventData": {"Hashes": f"SHA256={SHA}", "Image": "C:\\tool.exe"},
            "EdrData": {"Endpoint": {"UUID": "ep-1", "Hostname": "WIN-9"}},
        }
    }
    res = env.a("POST", "/misp/false-positive", json={"event": event}, key=env.analyst_key)
    assert res.status_code == 200, res.text
    assert res.json["data"] == {"values": [SHA]}
    env.a("POST", "/misp/sync", json={})
    with fake.lock:
        rows = [(s.type, s.source) for s in fake.model.sightings]
    assert rows == [("1", "ep-1|")]
    bare = {"Event": {"EventData": {"Image": "C:\\clean.exe"}}}
    res = env.a("POST", "/misp/false-positive", json={"event": bare})
    assert res.json["data"] == {"values": []}
    assert env.a("POST", "/misp/false-positive", json={"event": 1}).status_code == 422
    assert (
        env.a("POST", "/misp/false-positive", json={"event": event}, key=env.plugin_key).status_code
        == 403
    )


def test_several_misp_instances(configured: Any, fake: FakeMisp, clock: Clock) -> None:
    """A second MISP (another community): its own settings, IoC source, status, removal."""
    env = configured
    seed_event(fake, [("sha256", SHA)])
    with FakeMisp(clock=clock) as other:
        seed_event(other, [("domain", "partner.example")])
        res = env.a(
            "POST",
            "/misp/instances",
            json={
                "name": "partner",
                "settings": {
                    "enabled": True,
                    "url": other.url,
                    "api_key": DEFAULT_KEY,
                    "read_timeout": 5.0,
                    "reports_enabled": False,
                },
            },
        )
        assert res.status_code == 200, res.text
        assert res.json["data"]["source_name"] == "misp-partner"
        dup = env.a("POST", "/misp/instances", json={"name": "partner"})
        assert dup.status_code == 422
        assert env.a("POST", "/misp/instances", json={"name": "Bad Name"}).status_code == 422
        env.a("POST", "/misp/sync", json={})
        part = env.a("POST", "/misp/sync", json={}, params={"instance": "partner"}).json["data"]
        assert part["pull"]["iocs"] == 1 and part["url"] == other.url
        table = env.ctx.store.iocs
        assert {(i.value, i.source) for i in table.list()} == {
            (SHA, "misp"),
            ("partner.example", "misp-partner"),
        }
        listed = env.a("GET", "/misp/instances").json["data"]
        assert [i["name"] for i in listed] == ["default", "partner"]
        assert listed[1]["streams"]["pull"] == "ok"
        assert env.a("GET", "/misp/status", params={"instance": "nope"}).status_code == 404
        # the worker runs every instance
        instances = _misp(env.ctx).instances()
        assert instances.wants_events()
        assert env.a("DELETE", "/misp/instances/partner").status_code == 200
        assert {i.source for i in table.list()} == {"misp"}
        assert env.a("DELETE", "/misp/instances/partner").status_code == 404
        assert [i["name"] for i in env.a("GET", "/misp/instances").json["data"]] == ["default"]


def test_instances_survive_a_restart(tmp_path: Path, fake: FakeMisp, clock: Clock) -> None:
    from appliance.misp import MispSync
    from appliance.misp.instances import MispInstances

    def build(root: Path, settings: Any) -> MispSync:
        return MispSync.open(root, settings, clock=clock)

    first = MispInstances(tmp_path, build(tmp_path, None), build)
    first.create("partner", {"enabled": True, "url": fake.url, "api_key": DEFAULT_KEY})
    first.close()
    again = MispInstances(tmp_path, build(tmp_path, None), build)
    assert again.names() == ["default", "partner"]
    part = again.get("partner")
    assert part.settings.url == fake.url and part.settings.api_key == DEFAULT_KEY
    assert part.settings.source_name == "misp-partner"
    again.close()
