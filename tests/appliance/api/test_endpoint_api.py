"""Endpoint API in process: enrollment, identity, /logs, commands, content distribution."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from rules import wire
from tests.appliance.conftest import Env, event, make_csr


def test_enroll_issues_cert_with_uuid_cn_and_token_is_one_time(env: Env) -> None:
    token, _ = env.ctx.identity.create_token(group="lab")
    csr, _ = make_csr("attacker-chosen")
    res = env.e("POST", "/enroll", None, json={"token": token, "csr_pem": csr, "hostname": "h"})
    assert res.status_code == 200
    body = wire.EnrollResponse.from_dict(res.json)
    assert body.group == "lab"
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(body.certificate_pem.encode())
    assert cert.subject.rfc4514_string() == f"CN={body.uuid}"
    again = env.e("POST", "/enroll", None, json={"token": token, "csr_pem": csr})
    assert again.status_code == 403
    assert again.json["message"] == "NOK"


def test_enroll_rejects_expired_token_and_bad_csr(env: Env, clock) -> None:
    token, _ = env.ctx.identity.create_token(ttl=10)
    clock.now += 11
    csr, _ = make_csr()
    assert env.e("POST", "/enroll", None, json={"token": token, "csr_pem": csr}).status_code == 403
    token, _ = env.ctx.identity.create_token()
    res = env.e("POST", "/enroll", None, json={"token": token, "csr_pem": "nope"})
    assert res.status_code == 422
    assert env.e("POST", "/enroll", None, body=b"{not json").status_code == 400
    assert env.e("POST", "/enroll", None, json={"token": token}).status_code == 422


def test_routes_other_than_enroll_need_a_certificate(env: Env) -> None:
    for path in ("/logs", "/commands", "/rules", "/iocs", "/config", "/key"):
        res = env.e("GET" if path != "/logs" else "POST", path, None)
        assert res.status_code == 401, path
    assert env.e("GET", "/healthz", None).status_code == 200


def test_identity_headers_cannot_spoof(env: Env) -> None:
    agent = env.enroll()
    other = env.enroll("host-2")
    res = env.e(
        "GET", "/key", agent, headers={"X-Endpoint-Uuid": other.uuid, "X-Forwarded-For": "1.2.3.4"}
    )
    assert res.text == agent.uuid
    # a direct (non-front) connection from elsewhere has no identity
    res = env.endpoint.simulate_get(
        "/key", remote_addr="10.9.9.9", extras={"REMOTE_PORT": str(agent.port)}
    )
    assert res.status_code == 401


def test_issued_certificates_are_read_once_not_per_agent(env: Env, clock) -> None:
    """The issued (uuid, sha256) of every certificate is loaded in one query at the first
    check; later agents' first requests ask only for their endpoint row. A certificate issued
    after that load is found in the store, and a foreign one is still refused."""
    agents = [env.enroll(f"host-{i}") for i in range(3)]
    certs = env.ctx.store.certs
    asked: list[str] = []
    get = certs.get
    certs.get = lambda serial: asked.append(serial) or get(serial)  # type: ignore[method-assign]
    for agent in agents:
        assert env.e("GET", "/key", agent).text == agent.uuid
    assert asked == []
    late = env.enroll("host-late")
    clock.now += 10  # past the endpoint row's 5 s cache
    assert env.e("GET", "/key", late).text == late.uuid
    assert len(asked) == 1  # issued after the load: one store read, then remembered
    clock.now += 10
    assert env.e("GET", "/key", late).text == late.uuid and len(asked) == 1
    env.ctx.identity.revoke(agents[0].uuid)
    assert env.e("GET", "/key", agents[0]).status_code == 403  # revocation is still checked


def test_revoked_and_expired_certificates_refused(env: Env, clock) -> None:
    agent = env.enroll()
    assert env.e("GET", "/key", agent).status_code == 200
    env.ctx.identity.revoke(agent.uuid)
    assert env.e("GET", "/key", agent).status_code == 403
    fresh = env.enroll()
    clock.now += 400 * 86400
    assert env.e("GET", "/key", fresh).status_code == 403


def test_logs_durable_idempotent_and_enriched(env: Env) -> None:
    agent = env.enroll(hostname="ws-1")
    events = [event(i) for i in range(5)] + [event(9, signature="Mimikatz", crit=9)]
    res = env.post_logs(agent, events, batch_id="b-1")
    assert res.status_code == 200
    assert res.json == {"batch_id": "b-1", "accepted": 6, "duplicate": False}
    again = env.post_logs(agent, events, batch_id="b-1")
    assert again.json["duplicate"] is True and again.json["accepted"] == 0
    env.ctx.events.flush()
    stored = list(env.ctx.events.iter_events(endpoint=agent.uuid))
    assert len(stored) == 6
    edr = stored[0]["Event"]["EdrData"]
    assert edr["Endpoint"]["UUID"] == agent.uuid and edr["Endpoint"]["Hostname"] == "ws-1"
    assert len(edr["Event"]["Hash"]) == 40
    report = env.ctx.reducer.report(agent.uuid)
    assert report["alert-count"] == 1 and report["signatures"] == ["Mimikatz"]


def test_a_failed_fan_out_still_acknowledges_the_stored_batch(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events are durable: a 500 would make the agent retry into a duplicate."""
    agent = env.enroll()

    def broken(*args: object) -> None:
        raise RuntimeError("fleet store down")

    monkeypatch.setattr(env.ctx.ingest, "_after_durable", broken)
    monkeypatch.setattr(env.ctx.ingest.hub, "publish", broken)
    monkeypatch.setattr(env.ctx.ingest, "touch", broken)
    events = [event(1), event(2, signature="Mimikatz", crit=9)]
    res = env.post_logs(agent, events, batch_id="b-f")
    assert res.status_code == 200 and res.json["accepted"] == 2
    assert env.post_logs(agent, events, batch_id="b-f").json["duplicate"] is True
    env.ctx.events.flush()
    assert env.ctx.events.count("Mimikatz") == 1
    assert "heron_fanout_errors_total 4" in env.a("GET", "/metrics").text  # + the retry's


def test_logs_edrdata_from_agent_is_overwritten(env: Env) -> None:
    agent = env.enroll()
    ev = event(1)
    ev["Event"]["EdrData"] = {"Endpoint": {"UUID": "00000000-0000-0000-0000-000000000000"}}
    assert env.post_logs(agent, [ev]).status_code == 200
    env.ctx.events.flush()
    stored = list(env.ctx.events.iter_events(endpoint=agent.uuid))
    assert stored[0]["Event"]["EdrData"]["Endpoint"]["UUID"] == agent.uuid


def test_logs_bad_input_is_4xx_and_keeps_stored_data(env: Env) -> None:
    agent = env.enroll()
    assert env.post_logs(agent, [event(1)], batch_id="ok").status_code == 200
    headers = {"Content-Encoding": "gzip"}
    bad_json = gzip.compress(b'{"Event": {}}\n{broken\n')
    res = env.e("POST", "/logs", agent, body=bad_json, headers=headers)
    assert res.status_code == 400 and "line 2" in res.json["error"]
    res = env.e("POST", "/logs", agent, body=b"not gzip", headers=headers)
    assert res.status_code == 400
    res = env.e("POST", "/logs", agent, body=gzip.compress(b"[1,2]\n"), headers=headers)
    assert res.status_code == 422
    res = env.e("POST", "/logs", agent, body=b"x", headers={"Content-Encoding": "br"})
    assert res.status_code == 415
    env.ctx.events.flush()
    assert len(list(env.ctx.events.iter_events(endpoint=agent.uuid))) == 1
    # An odd System block is an event all the same: stored, not refused with its batch.
    res = env.e(
        "POST", "/logs", agent, body=gzip.compress(b'{"Event": {"System": 3}}'), headers=headers
    )
    assert res.status_code == 200
    env.ctx.events.flush()
    assert len(list(env.ctx.events.iter_events(endpoint=agent.uuid))) == 2


def test_gzip_bomb_is_bounded(env: Env) -> None:
    agent = env.enroll()
    limit = env.ctx.config.limits.logs_body
    bomb = gzip.compress(b"\n" * (limit + 1024), compresslevel=9)
    assert len(bomb) < 1_000_000
    res = env.e("POST", "/logs", agent, body=bomb, headers={"Content-Encoding": "gzip"})
    assert res.status_code == 413


def test_oversized_compressed_body_413(env: Env) -> None:
    agent = env.enroll()
    too_big = b"x" * (env.ctx.config.limits.logs_body_compressed + 1)
    res = env.e("POST", "/logs", agent, body=too_big, headers={"Content-Encoding": "gzip"})
    assert res.status_code == 413


def test_lines_over_64k_accepted_up_to_documented_limit(env: Env) -> None:
    agent = env.enroll()
    big = event(1, extra={"Blob": "A" * 200_000})
    res = env.post_logs(agent, [big])
    assert res.status_code == 200 and res.json["accepted"] == 1
    over = event(2, extra={"Blob": "B" * (wire.MAX_EVENT_LINE + 10)})
    res = env.post_logs(agent, [over])
    assert res.status_code == 413 and "line 1" in res.json["error"]


def test_command_round_trip(env: Env) -> None:
    agent = env.enroll()
    assert env.e("GET", "/commands", agent).status_code == 204
    res = env.a(
        "POST",
        f"/endpoints/{agent.uuid}/command",
        json={"command-line": "hash C:\\Windows\\notepad.exe", "timeout": 5_000_000_000},
    )
    assert res.status_code == 200
    cmd_id = res.json["data"]["command"]["id"]
    got = env.e("GET", "/commands", agent)
    cmd = wire.Command.from_dict(got.json)
    assert (cmd.id, cmd.name, cmd.args, cmd.timeout) == (
        cmd_id,
        "hash",
        ["C:\\Windows\\notepad.exe"],
        5.0,
    )
    assert env.e("GET", "/commands", agent).status_code == 204  # delivered once
    result = wire.CommandResult(id=cmd_id, exit_code=0, stdout="abc", json={"sha256": "x"})
    body = gzip.compress(json.dumps(result.to_dict()).encode())
    res = env.e("POST", "/commands", agent, body=body, headers={"Content-Encoding": "gzip"})
    assert res.status_code == 200
    assert env.e("POST", "/commands", agent, json=result.to_dict()).status_code == 403
    latest = env.a("GET", f"/endpoints/{agent.uuid}/command?wait=true").json["data"]
    assert latest["completed"] is True and latest["result"]["stdout"] == "abc"
    # WHIDS EndpointCommand: the result at the top level, stdout/stderr as Go []byte (base64)
    assert base64.b64decode(latest["stdout"]) == b"abc" and latest["stderr"] == ""
    assert latest["json"] == {"sha256": "x"} and latest["error"] == ""
    assert latest["uuid"] == cmd_id and latest["expect-json"] is False
    field = env.a("GET", f"/endpoints/{agent.uuid}/command/stdout").json["data"]
    assert field == "abc"
    other = env.enroll("other")
    assert env.e("POST", "/commands", other, json=result.to_dict()).status_code == 404


def test_commands_queue_in_order_and_time_out(env: Env, clock) -> None:
    agent = env.enroll()
    ids = [
        env.a(
            "POST",
            f"/endpoints/{agent.uuid}/command",
            json={"name": "ls", "args": [str(i)], "timeout": 1},
        ).json["data"]["command"]["id"]
        for i in range(3)
    ]
    got = [env.e("GET", "/commands", agent).json["id"] for _ in range(3)]
    assert got == ids
    clock.now += 10_000
    history = env.a("GET", f"/endpoints/{agent.uuid}/commands").json["data"]
    assert {c["state"] for c in history} == {"timeout"}


def test_rules_iocs_hashes_match_wire(env: Env) -> None:
    agent = env.enroll()
    iocs = [{"value": "EVIL.example", "type": "domain"}, {"value": "A" * 64, "type": "sha256"}]
    assert env.a("POST", "/iocs", json=iocs).status_code == 200
    got = env.e("GET", "/iocs", agent).json
    assert {i["value"] for i in got} == {"EVIL.example", "a" * 64}
    assert env.e("GET", "/iocs/sha256", agent).text == wire.iocs_sha256(got)
    body = env.e("GET", "/rules", agent).text
    assert env.e("GET", "/rules/sha256", agent).text == wire.rules_sha256(body)


def test_config_documents(env: Env) -> None:
    agent = env.enroll()
    assert env.e("GET", "/config", agent).status_code == 204
    doc = {"forwarder": {"batch": 500}, "name": "x"}
    assert env.e("POST", "/config", agent, json=doc).status_code == 200
    assert env.e("POST", "/config", agent, json=doc).status_code == 403
    assert env.e("GET", "/config", agent).json == doc
    assert env.e("GET", "/config/sha256", agent).text == wire.config_sha256(doc)
    env.a("POST", f"/endpoints/{agent.uuid}/config", json={"new": 1})
    assert env.e("GET", "/config", agent).json == {"new": 1}


def test_system_info_and_tools(env: Env) -> None:
    agent = env.enroll()
    assert (
        env.e("POST", "/info/system", agent, json={"hostname": "X", "os": "linux"}).status_code
        == 200
    )
    ep = env.a("GET", f"/endpoints/{agent.uuid}").json["data"]
    assert ep["system-info"]["os"] == "linux"
    silent = env.enroll("host-2")  # never posted its system information
    listed = {e["uuid"]: e for e in env.a("GET", "/endpoints").json["data"]}
    assert listed[agent.uuid]["system-info"] == {"hostname": "X", "os": "linux"}  # as WHIDS lists
    assert listed[silent.uuid]["system-info"] is None
    assert "config" not in listed[agent.uuid]
    env.a("POST", "/endpoints/windows/sysmon/binary", body=b"MZ binary")
    tools = env.e("GET", "/tools?os=windows&binary=true", agent).json
    assert tools["sysmon"]["metadata"]["size"] if "size" in tools["sysmon"]["metadata"] else True
    assert tools["sysmon"]["binary"]


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", "a\\b", "x\x00y", ""])
def test_upload_rejects_unsafe_names(env: Env, name: str) -> None:
    import base64
    import hashlib

    agent = env.enroll()
    data = b"hello"
    chunk = {
        "filename": name,
        "guid": "{11111111-2222-3333-4444-555555555555}",
        "event_hash": "a" * 40,
        "content": base64.b64encode(data).decode(),
        "chunk": 1,
        "total": 1,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert env.e("POST", "/upload/dumps", agent, json=chunk).status_code == 400
    assert not list((env.ctx.data_dir / "artifacts").rglob("*x*"))


def test_upload_rejects_traversal_in_guid_and_hash(env: Env) -> None:
    import base64
    import hashlib

    agent = env.enroll()
    base = {
        "filename": "f.bin",
        "guid": "{11111111-2222-3333-4444-555555555555}",
        "event_hash": "a" * 40,
        "content": base64.b64encode(b"x").decode(),
        "chunk": 1,
        "total": 1,
        "sha256": hashlib.sha256(b"x").hexdigest(),
    }
    for key, value in (
        ("guid", "../../etc"),
        ("event_hash", "../" + "a" * 40),
        ("guid", "{11111111-2222-3333-4444-555555555555}/../.."),
    ):
        res = env.e("POST", "/upload/dumps", agent, json=dict(base, **{key: value}))
        assert res.status_code == 400, (key, value)


def test_commands_long_poll(env: Env) -> None:
    from dataclasses import replace

    agent = env.enroll()
    env.ctx.config = replace(
        env.ctx.config, commands=replace(env.ctx.config.commands, poll_wait=2.0)
    )
    started = env.ctx.clock()
    assert env.e("GET", "/commands", agent).status_code == 204
    assert env.ctx.clock() - started >= 2.0  # waited (on the injected clock)


def test_logs_blank_lines_crlf_and_huge_integers(env: Env) -> None:
    agent = env.enroll()
    body = b"\n\r\n" + json.dumps(event(1)).encode() + b"\r\n\n  \n"
    res = env.e(
        "POST", "/logs", agent, body=gzip.compress(body), headers={"Content-Encoding": "gzip"}
    )
    assert res.status_code == 200 and res.json["accepted"] == 1
    huge = json.dumps(event(2)).encode().replace(b'"EventID": 1', b'"EventID": 1' + b"0" * 30)
    res = env.e(
        "POST", "/logs", agent, body=gzip.compress(huge), headers={"Content-Encoding": "gzip"}
    )
    assert res.status_code == 422


def test_whids_corpus_batch_is_ingested_whole(env: Env, shared_dir) -> None:
    raw = (shared_dir / "corpus" / "whids" / "events.json").read_bytes()
    lines = [ln for ln in raw.splitlines() if ln.strip()]
    agent = env.enroll()
    res = env.e(
        "POST",
        "/logs",
        agent,
        body=gzip.compress(raw),
        headers={"Content-Encoding": "gzip", wire.HEADER_BATCH_ID: "whids-corpus"},
    )
    assert res.status_code == 200, res.text
    assert res.json["accepted"] == len(lines)
    env.ctx.events.flush()
    assert sum(1 for _ in env.ctx.events.iter_events(endpoint=agent.uuid)) == len(lines)
