"""Rule packs, enable/disable and rule-set versions (services/rulepacks.py) through the admin
API: the served rules hash follows every change, and what agents compile follows it."""

from __future__ import annotations

from typing import Any

import rules
from rules import wire
from tests.appliance.conftest import Env


def _served(env: Env, agent: Any) -> tuple[str, str]:
    body = env.e("GET", wire.ROUTE_RULES, agent).text
    return body, env.e("GET", wire.ROUTE_RULES_SHA256, agent).text


def _compiled(body: str) -> int:
    return int(rules.Engine(rules.loads(body, source="<served>")).rule_count)


def test_default_packs_listed_disabled_enabled_and_rolled_back(env: Env) -> None:
    assert env.ctx.content.seed_defaults() > 0
    agent = env.enroll()
    listed = {p["name"]: p for p in env.a("GET", "/rules/packs").json["data"]}
    assert {"linux", "windows", "forwarding"} <= set(listed)
    win = listed["windows"]
    assert win["licence"] == "GPL-3.0-or-later" and win["version"] == wire.HERON_VERSION
    assert win["rules"] == win["enabled"] >= 20
    body, sha = _served(env, agent)
    total = _compiled(body)
    before = env.a("GET", "/rules/versions").json["data"][0]["version"]

    # a whole pack off: the served set changes, agents compile fewer rules
    res = env.a("POST", "/rules/state", json={"enabled": False, "pack": "windows"})
    assert res.status_code == 200 and len(res.json["data"]["changed"]) == win["rules"]
    body2, sha2 = _served(env, agent)
    assert sha2 != sha and sha2 == res.json["data"]["sha256"]
    assert _compiled(body2) == total - win["rules"]
    assert {p["name"]: p for p in env.a("GET", "/rules/packs").json["data"]}["windows"][
        "enabled"
    ] == 0
    # one rule back on
    res = env.a("POST", "/rules/state", json={"enabled": True, "names": ["WinDCSync"]})
    assert res.json["data"]["changed"] == ["WinDCSync"]
    assert _compiled(_served(env, agent)[0]) == total - win["rules"] + 1
    # nothing to change: no new version
    count = len(env.a("GET", "/rules/versions").json["data"])
    env.a("POST", "/rules/state", json={"enabled": True, "names": ["WinDCSync"]})
    assert len(env.a("GET", "/rules/versions").json["data"]) == count

    # roll back to the set before: the same hash as then
    res = env.a("POST", "/rules/rollback", json={"version": before})
    assert res.status_code == 200 and _served(env, agent)[1] == sha
    versions = env.a("GET", "/rules/versions").json["data"]
    assert versions[0]["sha256"] == sha and len(versions) <= 10


def test_bad_requests_are_4xx_and_change_nothing(env: Env) -> None:
    env.ctx.content.seed_defaults()
    sha = env.ctx.content.rules_text()[1]
    assert env.a("POST", "/rules/state", json={"enabled": False, "pack": "nope"}).status_code == 404
    assert (
        env.a("POST", "/rules/state", json={"enabled": False, "names": ["Nope"]}).status_code == 404
    )
    assert env.a("POST", "/rules/state", json={"enabled": "no"}).status_code in (400, 422)
    assert env.a("POST", "/rules/state", json={"enabled": False}).status_code in (400, 422)
    assert env.a("POST", "/rules/rollback", json={"version": "99999999"}).status_code == 404
    assert env.a("POST", "/rules/rollback", json={"version": "../x"}).status_code in (400, 422)
    assert (
        env.a(
            "POST", "/rules/state", json={"enabled": False, "pack": "linux"}, key=env.analyst_key
        ).status_code
        == 403
    )
    assert env.ctx.content.rules_text()[1] == sha


def test_versions_are_bounded(env: Env) -> None:
    rule = {
        "Name": "R",
        "Meta": {"Events": {"Security": [4688]}, "Criticality": 5, "Schema": "2.0.0"},
        "Matches": [],
        "Condition": "",
    }
    for i in range(15):
        rule["Meta"]["Criticality"] = 1 + i % 9
        env.a("POST", "/rules?update=true", json=[rule])
    versions = env.a("GET", "/rules/versions").json["data"]
    assert len(versions) == 10
    assert versions[0]["sha256"] == env.ctx.content.rules_text()[1]
