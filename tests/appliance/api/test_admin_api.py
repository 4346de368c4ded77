"""Admin API in process: WHIDS client flows, envelope, keys, roles, artifacts, IoCs, rules."""

from __future__ import annotations

import base64
import gzip
import hashlib

import pytest

from rules import wire
from tests.appliance.conftest import Env, event


def test_envelope_and_both_key_headers(env: Env) -> None:
    for header in ("X-Api-Key", "Api-Key", "X-Api-key"):
        res = env.admin.simulate_get("/stats", headers={header: env.admin_key})
        assert res.status_code == 200
        assert set(res.json) == {"data", "message", "error"} and res.json["message"] == "OK"


@pytest.mark.parametrize(
    "headers,status", [({}, 401), ({"X-Api-Key": "nope"}, 401), ({"Api-Key": ""}, 401)]
)
def test_missing_or_wrong_key(env: Env, headers: dict[str, str], status: int) -> None:
    res = env.admin.simulate_get("/endpoints", headers=headers)
    assert res.status_code == status
    assert res.json["message"] == "NOK" and res.json["error"] and res.json["data"] is None


def test_keys_are_stored_hashed_and_never_listed(env: Env) -> None:
    users = env.a("GET", "/users").json["data"]
    assert users and all("key" not in u for u in users)
    rows = env.ctx.store.db.query("SELECT key_hash FROM users")
    assert env.admin_key not in {r[0] for r in rows}
    assert hashlib.sha256(env.admin_key.encode()).hexdigest() in {r[0] for r in rows}


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("POST", "/iocs", [{"value": "evil.example", "type": "domain"}]),
        ("DELETE", "/iocs?value=x", None),
        ("PUT", "/endpoints", None),
        ("POST", "/rules", [{"Name": "x"}]),
        ("PUT", "/users?identifier=bob", None),
        ("PUT", "/settings/foo", {"a": 1}),
    ],
)
def test_analyst_cannot_write(env: Env, method: str, path: str, body: object) -> None:
    res = env.a(method, path, key=env.analyst_key, json=body)
    assert res.status_code == 403, res.text
    assert env.a("GET", "/endpoints", key=env.analyst_key).status_code == 200
    assert env.a("GET", "/users", key=env.analyst_key).status_code == 403


def test_plugin_can_push_iocs_but_not_manage_endpoints(env: Env) -> None:
    res = env.a("POST", "/iocs", key=env.plugin_key, json=[{"value": "1.2.3.4", "type": "ip-dst"}])
    assert res.status_code == 200
    assert env.a("PUT", "/endpoints", key=env.plugin_key).status_code == 403


def test_user_lifecycle_and_key_rotation(env: Env) -> None:
    res = env.a("POST", "/users", json={"identifier": "bob", "role": "analyst"})
    assert res.status_code == 200  # WHIDS answers 200 and pywhids insists on it
    bob = res.json["data"]
    assert env.a("GET", "/stats", key=bob["key"]).status_code == 200
    rotated = env.a("POST", f"/users/{bob['uuid']}?newkey=true", json={}).json["data"]
    assert env.a("GET", "/stats", key=bob["key"]).status_code == 401
    assert env.a("GET", "/stats", key=rotated["key"]).status_code == 200
    assert env.a("POST", "/users", json={"identifier": "bob"}).status_code == 409
    assert env.a("DELETE", f"/users/{bob['uuid']}").status_code == 200
    assert env.a("GET", "/stats", key=rotated["key"]).status_code == 401
    assert env.a("GET", "/users/not-a-uuid").status_code == 400
    assert env.a("POST", "/users", json={"identifier": "x", "role": "god"}).status_code == 422


def test_user_default_role_is_least_privilege(env: Env) -> None:
    """WHIDS made every user an admin; without `role` Heron makes a read-only analyst."""
    put = env.a("PUT", "/users?identifier=carol").json["data"]
    post = env.a("POST", "/users", json={"identifier": "dave"}).json["data"]
    assert put["role"] == post["role"] == "analyst"
    assert env.a("GET", "/stats", key=put["key"]).status_code == 200
    assert env.a("POST", "/iocs", key=put["key"], json=[]).status_code == 403
    assert env.a("PUT", "/users?identifier=erin", key=post["key"]).status_code == 403
    plugin = env.a("PUT", "/users?identifier=misp-sync&role=plugin").json["data"]
    assert plugin["role"] == "plugin"


@pytest.mark.parametrize(
    "identifier", ["bell\x07", "new\nline", "tab\there", "rtl\u202eexe.txt", "nul\x00", "del\x7f"]
)
def test_user_identifier_without_control_characters(env: Env, identifier: str) -> None:
    res = env.a("POST", "/users", json={"identifier": identifier})
    assert res.status_code in (400, 422), res.json
    assert "identifier" in res.json["error"] or "NUL" in res.json["error"]
    assert not [u for u in env.a("GET", "/users").json["data"] if u["identifier"] == identifier]
    fine = {"identifier": "Ana María (SOC) <ana@x>"}  # spaces, accents, punctuation are fine
    assert env.a("POST", "/users", json=fine).status_code == 200


def test_ioc_add_list_delete_like_pywhids(env: Env) -> None:
    iocs = [
        {
            "uuid": f"7a2d3e4f-0000-4000-8000-00000000000{i}",
            "guuid": "",
            "source": "misp",
            "value": v,
            "type": t,
        }
        for i, (v, t) in enumerate(
            [("evil.example", "domain"), ("B" * 32, "md5"), ("10.0.0.1", "ip-dst")]
        )
    ]
    assert env.a("POST", "/iocs", json=iocs).status_code == 200
    listed = env.a("GET", "/iocs").json["data"]
    assert {i["value"] for i in listed} == {"evil.example", "b" * 32, "10.0.0.1"}
    assert len(env.a("GET", "/iocs?type=md5&value=evil.example").json["data"]) == 2  # OR
    for ioc in iocs[:2]:  # pywhids: one DELETE per IoC by uuid
        assert env.a("DELETE", f"/iocs?uuid={ioc['uuid']}").json["data"]["deleted"] == 1
    assert env.a("DELETE", "/iocs").json["data"]["deleted"] == 0  # no filter = no-op
    assert [i["value"] for i in env.a("GET", "/iocs").json["data"]] == ["10.0.0.1"]
    bad = env.a("POST", "/iocs", json=[{"value": "zz", "type": "md5"}])
    assert bad.status_code == 422


def test_endpoint_creation_then_enroll_with_returned_key(env: Env) -> None:
    from tests.appliance.conftest import make_csr

    created = env.a("PUT", "/endpoints?group=lab").json["data"]
    csr, _ = make_csr()
    res = env.e("POST", "/enroll", None, json={"token": created["key"], "csr_pem": csr})
    assert res.status_code == 200 and res.json["uuid"] == created["uuid"]
    ep = env.a("GET", f"/endpoints/{created['uuid']}").json["data"]
    assert ep["status"] == "active" and ep["group"] == "lab"
    res = env.a("POST", f"/endpoints/{created['uuid']}", json={"criticality": 7, "group": "g2"})
    assert res.json["data"]["criticality"] == 7
    assert (
        env.a("POST", f"/endpoints/{created['uuid']}", json={"criticality": 11}).status_code == 422
    )
    filtered = env.a("GET", "/endpoints?criticality=5").json["data"]
    assert [e["uuid"] for e in filtered] == [created["uuid"]]


def _upload(env: Env, agent, name: str, data: bytes, chunk_size: int = 4) -> list:
    parts = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] or [b""]
    out = []
    for k, part in reversed(list(enumerate(parts, start=1))):  # out of order on purpose
        chunk = wire.UploadChunk(
            filename=name,
            guid="{AAAAAAAA-2222-3333-4444-555555555555}",
            event_hash="f" * 40,
            content=base64.b64encode(part).decode(),
            chunk=k,
            total=len(parts),
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
        )
        res = env.e("POST", "/upload/dumps", agent, json=chunk.to_dict())
        assert res.status_code == 200, res.text
        out.append(res.json)
    return out


def test_artifact_upload_listing_and_download_raw_gunzip(env: Env) -> None:
    agent = env.enroll()
    report = b'{"processes": []}'
    results = _upload(env, agent, "report.json.gz", gzip.compress(report))
    assert results[-1]["complete"] is True and results[0]["complete"] is False
    listing = env.a("GET", f"/endpoints/{agent.uuid}/artifacts").json["data"]
    assert listing[0]["process-guid"] == "aaaaaaaa-2222-3333-4444-555555555555"
    base = listing[0]["base-url"]
    assert base.endswith("/")
    url = base + "report.json.gz"
    as_b64 = env.a("GET", url).json["data"]
    assert gzip.decompress(base64.b64decode(as_b64)) == report
    raw = env.a("GET", url + "?raw=true&gunzip=true")
    assert raw.content == report and raw.headers["content-type"] == "application/octet-stream"
    # pywhids builds base-url + "/" + name, so the URL has '//' in it
    doubled = env.a("GET", base + "/report.json.gz?raw=True&gunzip=True")
    assert doubled.status_code == 200 and doubled.content == report
    assert env.a("GET", f"/endpoints/{agent.uuid}/artifacts/x/y/../../etc/passwd").status_code in (
        400,
        404,
    )
    everything = env.a("GET", "/endpoints/artifacts?since=2000-01-01T00:00:00Z").json["data"]
    assert list(everything) == [agent.uuid]


def test_artifact_sha256_mismatch_discards(env: Env) -> None:
    agent = env.enroll()
    chunk = wire.UploadChunk(
        filename="a.bin",
        guid="{AAAAAAAA-2222-3333-4444-555555555555}",
        event_hash="f" * 40,
        content=base64.b64encode(b"abc").decode(),
        chunk=1,
        total=1,
        sha256="0" * 64,
    )
    res = env.e("POST", "/upload/dumps", agent, json=chunk.to_dict())
    assert res.status_code == 422
    assert env.a("GET", f"/endpoints/{agent.uuid}/artifacts").json["data"] == []


def test_rules_compile_checked_and_distributed(env: Env) -> None:
    agent = env.enroll()
    good = {
        "Name": "CmdExec",
        "Meta": {
            "Events": {"Microsoft-Windows-Sysmon/Operational": [1]},
            "Criticality": 5,
            "Schema": "2.0.0",
        },
        "Matches": ["$img: Image ~= 'cmd'"],
        "Condition": "$img",
    }
    res = env.a("POST", "/rules", json=[good])
    assert res.status_code == 200, res.text
    assert env.a("POST", "/rules", json=[good]).status_code == 409
    assert env.a("POST", "/rules?update=true", json=[good]).status_code == 200
    bad = dict(good, Name="Broken", Condition="$nope and (")
    res = env.a("POST", "/rules", json=[bad])
    assert res.status_code == 422 and "Broken" in res.json["error"]
    text = env.e("GET", "/rules", agent).text
    assert '"CmdExec"' in text and "Broken" not in text
    assert env.e("GET", "/rules/sha256", agent).text == wire.rules_sha256(text)
    assert [r["Name"] for r in env.a("GET", "/rules?name=^Cmd").json["data"]] == ["CmdExec"]
    assert env.a("DELETE", "/rules?name=CmdExec").status_code == 200
    assert env.e("GET", "/rules", agent).text == ""


def test_reports_and_archive(env: Env) -> None:
    agent = env.enroll()
    env.post_logs(
        agent,
        [
            event(1, signature="A", crit=8),
            event(2, signature="B", crit=3),
            event(3, signature="A", crit=8),
        ],
    )
    report = env.a("GET", f"/endpoints/{agent.uuid}/report").json["data"]
    assert report["alert-count"] == 3 and report["count-by-signature"] == {"A": 2, "B": 1}
    assert report["bounded-score"] == 100.0
    assert env.a("GET", "/endpoints/reports").json["data"][agent.uuid]["alert-count"] == 3
    assert env.a("GET", "/endpoints").json["data"][0]["score"] == 100.0
    assert env.a("DELETE", f"/endpoints/{agent.uuid}/report").status_code == 200
    assert env.a("GET", f"/endpoints/{agent.uuid}/report").json["data"] is None
    archive = env.a("GET", f"/endpoints/{agent.uuid}/report/archive?last=1d").json["data"]
    assert archive[0]["alert-count"] == 3 and "archived-time" in archive[0]


def test_endpoint_logs_detections_search(env: Env) -> None:
    agent = env.enroll()
    env.post_logs(agent, [event(1), event(2, signature="Evil", crit=9)])
    env.ctx.events.flush()
    window = "since=2026-05-28T00:00:00Z&until=2026-05-29T00:00:00Z"
    logs = env.a("GET", f"/endpoints/{agent.uuid}/logs?{window}").json["data"]
    dets = env.a("GET", f"/endpoints/{agent.uuid}/detections?{window}").json["data"]
    assert len(logs) == 2 and len(dets) == 1
    assert (
        env.a(
            "GET",
            f"/endpoints/{agent.uuid}/logs?since=2026-05-29T00:00:00Z&until=2026-05-28T00:00:00Z",
        ).status_code
        == 400
    )
    found = env.a("GET", "/search?q=cmd2.exe&detections=true").json["data"]
    assert found["total"] >= 1


def test_retro_hunt_uses_the_rules_engine(env: Env) -> None:
    agent = env.enroll()
    env.post_logs(agent, [event(i) for i in range(4)])
    env.ctx.events.flush()
    rule = {
        "Name": "Cmd3",
        "Meta": {
            "Events": {"Microsoft-Windows-Sysmon/Operational": [1]},
            "Criticality": 5,
            "Schema": "2.0.0",
        },
        "Matches": ["$img: Image ~= 'cmd3'"],
        "Condition": "$img",
    }
    res = env.a("POST", "/hunt/rules", key=env.analyst_key, json={"rules": [rule]})
    assert res.status_code == 200, res.text
    data = res.json["data"]
    assert data["scanned"] == 4 and len(data["matches"]) == 1
    assert data["matches"][0]["Event"]["Detection"]["Signature"] == ["Cmd3"]
    res = env.a("POST", "/hunt/rules", json={"rules": [dict(rule, Condition="(")]})
    assert res.status_code == 422
    assert (
        env.a(
            "POST", "/hunt/rules", key=env.analyst_key, json={"rules": [rule], "store": True}
        ).status_code
        == 403
    )
    stored = env.a("POST", "/hunt/rules", json={"rules": [rule], "store": True}).json["data"]
    assert stored["stored"] == 1
    env.ctx.events.flush()
    found = env.a("GET", "/search?q=retro:true&detections=true").json["data"]
    assert found["total"] == 1
    assert found["events"][0]["Event"]["Detection"]["Signature"] == ["Cmd3"]


def test_hunt_sql(env: Env) -> None:
    agent = env.enroll()
    env.post_logs(agent, [event(i) for i in range(3)])
    env.ctx.events.flush()
    res = env.a(
        "POST", "/hunt/sql", key=env.analyst_key, json={"query": "SELECT count(*) AS n FROM events"}
    )
    assert res.status_code == 200, res.text
    assert res.json["data"]["rows"] == [[3]]
    bad = env.a("POST", "/hunt/sql", json={"query": "DROP TABLE events"})
    assert bad.status_code == 400


def test_settings_and_audit(env: Env) -> None:
    assert env.a("PUT", "/settings/misp.url", json={"url": "https://misp"}).status_code == 200
    assert env.a("GET", "/settings/misp.url", key=env.plugin_key).json["data"] == {
        "url": "https://misp"
    }
    assert env.a("GET", "/settings/../x").status_code in (400, 404)
    env.ctx.store.db.write(lambda cur: None)  # drain the async audit writes
    audit = env.a("GET", "/audit").json["data"]
    assert any(a["action"] == "PUT /settings/misp.url" for a in audit)


def test_sysmon_config_admin_and_endpoint(env: Env) -> None:
    agent = env.enroll()
    xml = '<Sysmon schemaversion="4.90"><EventFiltering/></Sysmon>'
    assert env.a("POST", "/endpoints/windows/sysmon/config", body=xml).status_code == 200
    doc = env.e("GET", "/sysmon/config?os=windows", agent).json
    assert doc["version"] == "4.90"
    assert env.e("GET", "/sysmon/config/sha256?os=windows", agent).text == doc["XmlSha256"]
    assert env.e("GET", "/sysmon/config?os=linux", agent).status_code == 204
    raw = env.a("GET", "/endpoints/windows/sysmon/config?format=xml&raw=true")
    assert raw.text == xml
    assert env.a("POST", "/endpoints/plan9/sysmon/config", body=xml).status_code == 400


def test_sysmon_config_delete_without_version_deletes_every_version(env: Env) -> None:
    for version in ("4.82", "4.90"):
        xml = f'<Sysmon schemaversion="{version}"><EventFiltering/></Sysmon>'
        assert env.a("POST", "/endpoints/windows/sysmon/config", body=xml).status_code == 200
    linux = '<Sysmon schemaversion="1.0"><EventFiltering/></Sysmon>'
    assert env.a("POST", "/endpoints/linux/sysmon/config", body=linux).status_code == 200
    one = env.a("DELETE", "/endpoints/windows/sysmon/config?version=4.90")
    assert one.status_code == 200
    assert env.a("GET", "/endpoints/windows/sysmon/config").json["data"]["version"] == "4.82"
    res = env.a("DELETE", "/endpoints/windows/sysmon/config")  # WHIDS: no version = all
    assert res.status_code == 200 and res.json["message"] == "OK"
    assert env.a("GET", "/endpoints/windows/sysmon/config").status_code == 404
    assert env.a("DELETE", "/endpoints/windows/sysmon/config").status_code == 404
    assert env.a("GET", "/endpoints/linux/sysmon/config").status_code == 200  # other OS kept


def test_cancel_and_delete_and_revoke_via_admin(env: Env) -> None:
    agent = env.enroll()
    cmd = env.a("POST", f"/endpoints/{agent.uuid}/command", json={"name": "ls"}).json["data"]
    cmd_id = cmd["command"]["id"]
    assert (
        env.a("DELETE", f"/endpoints/{agent.uuid}/commands/{cmd_id}").json["data"]["state"]
        == "cancelled"
    )
    assert env.e("GET", "/commands", agent).status_code == 204
    assert env.a("DELETE", f"/endpoints/{agent.uuid}/commands/{cmd_id}").status_code == 422
    assert env.a("POST", f"/endpoints/{agent.uuid}", json={"status": "revoked"}).status_code == 200
    assert env.e("GET", "/key", agent).status_code == 403
    other = env.enroll("h2")
    assert env.a("DELETE", f"/endpoints/{other.uuid}").status_code == 200
    assert env.e("GET", "/key", other).status_code == 403
    assert env.a("GET", f"/endpoints/{other.uuid}").status_code == 404


def test_batch_id_header_is_validated(env: Env) -> None:
    agent = env.enroll()
    res = env.post_logs(agent, [event(1)], batch_id="x" * 200)
    assert res.status_code == 422
    assert (
        env.a("POST", f"/endpoints/{agent.uuid}/command", json={"args": ["x"]}).status_code == 422
    )
    assert (
        env.a(
            "POST", f"/endpoints/{agent.uuid}/command", json={"name": "ls", "drop": ["/etc/shadow"]}
        ).status_code
        == 422
    )
