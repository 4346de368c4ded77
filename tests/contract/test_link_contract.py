"""Contract: the real agent link against the real appliance endpoint API, in process."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import pytest

from agent.link.enroll import enroll_online, renew
from agent.link.errors import EnrollmentError
from agent.link.forwarder import Forwarder, LinkState
from agent.link.identity import IdentityStore
from agent.link.poller import CommandPoller
from agent.link.spool import Spool
from agent.link.sysinfo import SysInfoReporter
from agent.link.transport import Request
from agent.link.updates import Updater
from agent.link.upload import Uploader
from rules import wire


def ev(i: int, detection: bool = False) -> dict:
    e: dict = {
        "Event": {
            "System": {
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "EventID": 1,
                "Computer": "ws1",
                "TimeCreated": {"SystemTime": f"2026-11-28T07:00:{i % 60:02d}.000000Z"},
            },
            "EventData": {"Image": "C:\\a.exe", "N": i},
        }
    }
    if detection:
        e["Event"]["Detection"] = {
            "Signature": ["Sig"],
            "Criticality": 9,
            "ATTACK": [],
            "Actions": [],
        }
    return e


@pytest.fixture
def enrolled(manager, tmp_path: Path) -> IdentityStore:
    store = IdentityStore(tmp_path / "agent" / "identity")
    ident = enroll_online(
        "127.0.0.1:1519", manager.token("g1"), store, transport=manager.transport(), hostname="ws1"
    )
    assert ident.group == "g1"
    return store


def stored(manager) -> list[dict]:
    return list(manager.ctx.events.iter_events())


def test_enroll_then_forward_exactly_once(manager, enrolled, tmp_path: Path) -> None:
    ident = enrolled.load()
    assert manager.ctx.store.endpoints.find(ident.uuid) is not None
    with Spool(tmp_path / "q", segment_events=40) as spool:
        fwd = Forwarder(spool, manager.transport(enrolled), sleep=lambda _: None)
        for i in range(100):
            fwd.submit(ev(i, detection=(i == 50)))
        assert fwd.drain() == 100
        # a batch re-sent after a lost ack is deduplicated by X-Heron-Batch-Id
        spool.submit(ev(999))
        batch = spool.next_batch(force=True)
        assert batch is not None
        from agent.link.forwarder import encode_batch

        t = manager.transport(enrolled)
        first = json.loads(t.send(encode_batch(batch)).body)
        again = json.loads(t.send(encode_batch(batch)).body)
        assert first["duplicate"] is False and again["duplicate"] is True
        spool.ack(batch)
    events = stored(manager)
    assert sorted(e["Event"]["EventData"]["N"] for e in events) == sorted([*range(100), 999])
    assert events[0]["Event"]["EventData"]["N"] == 50  # the detection went first
    edr = events[0]["Event"]["EdrData"]
    assert edr["Endpoint"]["UUID"] == ident.uuid


def test_unenrolled_and_revoked_agents_are_refused_and_keep_buffering(
    manager, enrolled, tmp_path: Path
) -> None:
    with Spool(tmp_path / "q", max_batch_delay=0) as spool:
        anon = Forwarder(spool, manager.transport(), sleep=lambda _: None)
        anon.submit(ev(1))
        anon.step()
        assert anon.state is LinkState.CERT_REJECTED
        manager.ctx.identity.revoke(enrolled.load().uuid)
        fwd = Forwarder(spool, manager.transport(enrolled), sleep=lambda _: None)
        fwd.submit(ev(2))
        fwd.step()
        assert fwd.state is LinkState.CERT_REJECTED and "revoked" in fwd.last_error
        assert spool.stats().queued_events == 2
    assert stored(manager) == []


def test_command_round_trip(manager, enrolled, tmp_path: Path) -> None:
    from appliance.store.models import CommandRecord

    target = tmp_path / "evidence.txt"
    target.write_bytes(b"evidence")
    ident = enrolled.load()
    cid = str(uuid.uuid4())
    manager.ctx.store.commands.add(
        CommandRecord(cid, ident.uuid, "hash", (str(target),), created=manager.ctx.clock())
    )
    poller = CommandPoller(manager.transport(enrolled), tmp_path / "cmd")
    res = poller.poll_once()
    assert res is not None and res.error == ""
    done = manager.ctx.store.commands.get(cid)
    assert done.state.value == "completed"
    assert done.result["json"]["hashes"]["sha256"] == hashlib.sha256(b"evidence").hexdigest()
    assert poller.poll_once() is None
    assert not list((tmp_path / "cmd" / "results").glob("*"))


def test_updates_from_manager(manager, enrolled, tmp_path: Path) -> None:
    rule = {
        "Name": "Contract",
        "Tags": [],
        "Meta": {
            "Events": {"Microsoft-Windows-Sysmon/Operational": [1]},
            "Criticality": 8,
            "Schema": "2.0.0",
            "LogType": "winevt",
        },
        "Matches": ["$a: Image ~= 'evil'"],
        "Condition": "$a",
        "Actions": [],
    }
    manager.ctx.content.put_rules([rule], update=False)
    manager.ctx.store.iocs.upsert(
        [wire.Ioc(value="evil.example", type="domain")], manager.ctx.clock()
    )
    manager.ctx.content.put_sysmon("linux", "4.90", '<Sysmon schemaversion="4.90"/>')
    ident = enrolled.load()
    manager.ctx.store.endpoints.update(ident.uuid, config={"general": {"log_all": True}})
    got: dict[str, list] = {"rules": [], "iocs": [], "config": [], "sysmon": []}
    up = Updater(manager.transport(enrolled), tmp_path / "u", {k: v.append for k, v in got.items()})
    assert up.check() == {
        "rules": "updated",
        "iocs": "updated",
        "config": "updated",
        "sysmon": "updated",
    }
    assert json.loads(got["rules"][0].splitlines()[0])["Name"] == "Contract"
    assert [(i.type, i.value) for i in got["iocs"][0]] == [("domain", "evil.example")]
    assert got["config"] == [{"general": {"log_all": True}}]
    assert got["sysmon"] == ['<Sysmon schemaversion="4.90"/>']
    assert set(up.check().values()) == {"unchanged"}


def test_artifact_upload_and_sysinfo(manager, enrolled, tmp_path: Path) -> None:
    ident = enrolled.load()
    guid = "{" + str(uuid.uuid4()) + "}"
    ehash = hashlib.sha1(b"e").hexdigest()
    d = tmp_path / "art" / guid / ehash
    d.mkdir(parents=True)
    data = os.urandom(5000)
    (d / "proc.dmp").write_bytes(data)
    (d / "manifest.json").write_text(json.dumps({"files": [{"name": "proc.dmp"}]}))
    up = Uploader(manager.transport(enrolled), tmp_path / "art", chunk_size=2048)
    st = up.run_once()
    assert st.files == 2 and st.chunks == 4 and st.failed == 0
    stored_file = next(manager.ctx.artifacts.root.rglob("proc.dmp"))
    assert stored_file.read_bytes() == data and ident.uuid in str(stored_file)
    rep = SysInfoReporter(manager.transport(enrolled), tmp_path / "si.sha")
    assert rep.run_once() and not rep.run_once()
    assert manager.ctx.store.endpoints.get(ident.uuid).system_info["edr"]["version"]


def test_renewal_within_the_manager_window(manager, enrolled, tmp_path: Path) -> None:
    ident = enrolled.load()
    old_cert = enrolled.cert_path.read_bytes()
    t = manager.transport(enrolled)

    with pytest.raises(EnrollmentError, match="renewal opens"):
        renew(enrolled, t)  # a fresh certificate is not renewable yet
    manager.ctx.clock = lambda: ident.not_after - 86400  # one day before expiry
    manager.ctx.identity.clock = manager.ctx.clock
    renewed = renew(enrolled, t)
    assert renewed.uuid == ident.uuid and enrolled.cert_path.read_bytes() != old_cert
    # the renewed certificate is accepted by the manager
    assert (
        manager.transport(enrolled).send(Request("GET", wire.ROUTE_KEY)).body.decode() == ident.uuid
    )


def test_offline_bundle_from_the_manager(manager, tmp_path: Path) -> None:
    from agent.link.enroll import enroll_bundle

    b = manager.ctx.identity.bundle(group="air", hostname="ws9")
    out = tmp_path / "heron-bundle"  # the layout `heron-manager enroll bundle` writes
    out.mkdir()
    (out / "client.pem").write_text(b.certificate_pem)
    (out / "client.key").write_text(b.key_pem)
    (out / "ca.pem").write_text(b.ca_pem)
    (out / "bundle.json").write_text(
        json.dumps(
            {
                "uuid": b.uuid,
                "endpoint_url": "https://mgr.example:1519",
                "group": b.group,
                "client_cert": "client.pem",
                "client_key": "client.key",
                "ca_cert": "ca.pem",
            }
        )
    )
    store = IdentityStore(tmp_path / "id")
    ident = enroll_bundle(out, store)
    assert (ident.uuid, ident.manager, ident.group) == (b.uuid, "mgr.example:1519", "air")
    assert oct(store.key_path.stat().st_mode & 0o777) == "0o600"
    assert manager.transport(store).send(Request("GET", wire.ROUTE_KEY)).body.decode() == b.uuid


def test_config_offered_when_the_manager_has_none(manager, enrolled, tmp_path: Path) -> None:
    doc = {"general": {"log_all": False, "criticality_threshold": 5}}
    up = Updater(
        manager.transport(enrolled),
        tmp_path / "u",
        {"config": lambda d: None},
        offer_config=lambda: doc,
    )
    assert up.check_item("config") == "offered"
    assert manager.ctx.store.endpoints.get(enrolled.load().uuid).config == doc
    assert up.check_item("config") == "unchanged"


def test_agent_with_link_attached_end_to_end_in_process(manager, tmp_path: Path) -> None:
    from agent.link.attach import attach
    from agent.service import build_agent
    from tests.agent.conftest import gene_rule, make_config

    config = make_config(tmp_path)
    store = IdentityStore(config.data_dir / "link" / "identity")
    ident = enroll_online(
        "127.0.0.1:1519", manager.token(), store, transport=manager.transport(), hostname="ws2"
    )
    agent = build_agent(config, sources=[], sinks=[])
    link = attach(agent, config, start=False, transport_factory=lambda: manager.transport(store))
    try:
        assert agent.runner.endpoint == ""
        rule = json.loads(
            gene_rule(
                "ContractPushed",
                ["$i: Image ~= 'evil\\.exe$'"],
                "$i",
                events={"Microsoft-Windows-Sysmon/Operational": [1]},
            )
        )
        manager.ctx.content.put_rules([rule], update=False)
        done = link.housekeeping_once()
        assert done["updates"]["rules"] == "updated" and done["identity"] == ident.uuid
        assert agent.runner.endpoint == ident.uuid
        event = ev(7)
        event["Event"]["EventData"]["Image"] = "C:\\x\\evil.exe"
        assert agent.process(event)
        link.forwarder.drain()
        # (the agent's rule-state report, health event 9011, travels in the same lane)
        got = [e for e in stored(manager) if e["Event"].get("Detection")]
        assert got[0]["Event"]["Detection"]["Signature"] == ["ContractPushed"]
        assert got[0]["Event"]["EdrData"]["Endpoint"]["UUID"] == ident.uuid
    finally:
        agent.close()


def test_tools_distributed_by_the_manager(manager, enrolled, tmp_path: Path) -> None:
    from agent.link.tools import ToolSync

    data = b"#!/bin/sh\necho '[]'\n"
    manager.ctx.store.tools.put("osqueryi", "linux", data, manager.ctx.clock())
    sync = ToolSync(manager.transport(enrolled), tmp_path / "tools", os_name="linux")
    assert sync.run_once() == {"osqueryi": "updated"}
    assert (tmp_path / "tools" / "osqueryi").read_bytes() == data
    assert sync.run_once() == {"osqueryi": "unchanged"}


def test_update_checks_are_one_request_and_match_the_single_routes(
    manager, enrolled, tmp_path: Path
) -> None:
    from agent.link.transport import MemoryTransport, Request, Response

    manager.ctx.content.put_sysmon("linux", "4.90", '<Sysmon schemaversion="4.90"/>')
    manager.ctx.store.tools.put("osqueryi", "linux", b"#!/bin/sh\n", manager.ctx.clock())
    real = manager.transport(enrolled)
    seen = MemoryTransport(real.send)
    folded = json.loads(real.send(Request("GET", wire.ROUTE_UPDATES + "?os=linux")).body)
    assert set(folded) == set(wire.UPDATE_ITEMS) and folded["config"] is None
    for name, route in (
        ("rules", wire.ROUTE_RULES_SHA256),
        ("iocs", wire.ROUTE_IOCS_SHA256),
        ("sysmon", wire.ROUTE_SYSMON_CONFIG_SHA256 + "?os=linux"),
    ):
        assert real.send(Request("GET", route)).body.decode().strip('"') == folded[name]
    listing = json.loads(real.send(Request("GET", wire.ROUTE_TOOLS + "?os=linux")).body)
    assert wire.tools_sha256(listing) == folded["tools"]
    got: dict[str, list] = {"rules": [], "iocs": [], "sysmon": []}
    up = Updater(seen, tmp_path / "u", {k: v.append for k, v in got.items()})
    up.check()
    up.check()
    paths = [r.path.split("?")[0] for r in seen.requests]
    assert paths.count(wire.ROUTE_UPDATES) == 2
    assert not any(p.endswith("/sha256") for p in paths)  # no single hash route asked
    # a manager of the previous version: /updates is 404, the single routes are used
    old = MemoryTransport(
        lambda r: Response(404) if r.path.startswith(wire.ROUTE_UPDATES) else real.send(r)
    )
    up_old = Updater(old, tmp_path / "u2", {"rules": got["rules"].append})
    assert up_old.check() == {"rules": "updated"} and not up_old.folded
    assert [r.path for r in old.requests][1:] == [wire.ROUTE_RULES_SHA256, wire.ROUTE_RULES]


def test_suppressions_pushed_by_group_and_applied_by_the_agent(manager, tmp_path: Path) -> None:
    from agent.link.attach import attach
    from agent.service import build_agent
    from tests.agent.conftest import gene_rule, make_config

    config = make_config(tmp_path)
    store = IdentityStore(config.data_dir / "link" / "identity")
    enroll_online(
        "127.0.0.1:1519",
        manager.token("builders"),
        store,
        transport=manager.transport(),
        hostname="build01",
    )
    agent = build_agent(config, sources=[], sinks=[])
    link = attach(agent, config, start=False, transport_factory=lambda: manager.transport(store))
    chan = {"Microsoft-Windows-Sysmon/Operational": [1]}
    manager.ctx.content.put_rules(
        [
            json.loads(
                gene_rule(
                    "TmpExec", ["$i: Image ~= '\\\\Temp\\\\'"], "$i", events=chan, criticality=6
                )
            ),
            json.loads(
                gene_rule("Evil", ["$i: Image ~= 'evil'"], "$i", events=chan, criticality=3)
            ),
        ],
        update=False,
    )
    tuning = manager.ctx.tuning
    tuning.add(
        {"rule": "TmpExec", "image_prefix": "C:\\Windows\\Temp\\msbuild", "group": "builders"}
    )
    tuning.add({"rule": "TmpExec", "command_line_regex": "never", "group": "other-group"})
    try:
        done = link.housekeeping_once()
        assert done["updates"]["suppressions"] == "updated"
        assert len(agent.detector.suppressions) == 1  # the other group's is not sent

        def image(path: str) -> dict:
            e = ev(1)
            e["Event"]["EventData"]["Image"] = path
            return e

        quiet = image("C:\\Windows\\Temp\\msbuild-1\\evil-tool.exe")
        agent.process(quiet)
        assert quiet["Event"]["Detection"]["Signature"] == ["Evil"]  # TmpExec silenced
        assert quiet["Event"]["Detection"]["Criticality"] == 3
        loud = image("C:\\Windows\\Temp\\dropper.exe")
        agent.process(loud)
        assert loud["Event"]["Detection"]["Signature"] == ["TmpExec"]
        assert agent.status()["suppressed"] == {"TmpExec": 1}
        assert set(link.housekeeping_once().get("updates", {"x": "unchanged"}).values()) <= {
            "unchanged"
        }
    finally:
        agent.close()


def test_agent_counters_reach_the_manager_endpoint_views(manager, tmp_path: Path) -> None:
    from agent.link.attach import attach
    from agent.service import build_agent
    from tests.agent.conftest import make_config

    config = make_config(tmp_path)
    store = IdentityStore(config.data_dir / "link" / "identity")
    ident = enroll_online(
        "127.0.0.1:1519", manager.token(), store, transport=manager.transport(), hostname="ws3"
    )
    agent = build_agent(config, sources=[], sinks=[])
    link = attach(agent, config, start=False, transport_factory=lambda: manager.transport(store))
    try:
        sc = agent.counters.source("linux-proc")
        sc.events, sc.lost, sc.shed, sc.degraded = 100, 7, 3, 40
        agent.runner.stats.dropped_actions["report"] = 2
        assert link.reports.report_counters()
        assert not link.reports.report_counters()  # unchanged: not sent again
        link.forwarder.drain()
        from appliance.services.ingest import COUNTERS_KIND

        body = manager.ctx.store.documents.get(COUNTERS_KIND, ident.uuid)
        assert body is not None
        doc = json.loads(body[0])
        assert doc["sources"]["linux-proc"] == {
            "events": 100,
            "drops": 0,
            "shed": 3,
            "lost": 7,
            "incomplete": 0,
            "degraded": 40,
        }
        assert doc["actions"]["dropped_actions"] == {"report": 2}
        assert doc["queue"]["disk_state"] == "ok"
        from falcon import testing

        from appliance.store import Role

        key = manager.ctx.identity.add_user("ops", Role.ADMIN)[1]
        admin = testing.TestClient(manager.admin, headers={wire.HEADER_API_KEY: key})
        res = admin.simulate_get(f"/endpoints/{ident.uuid}")
        assert res.json["data"]["agent-counters"]["sources"]["linux-proc"]["lost"] == 7
        listed = admin.simulate_get("/endpoints")
        (mine,) = [e for e in listed.json["data"] if e["uuid"] == ident.uuid]
        assert mine["agent-counters"]["actions"]["dropped_actions"] == {"report": 2}
    finally:
        agent.close()
