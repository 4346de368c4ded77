"""Endpoint rule state (services/rulestate.py): what agents report as health event 9011 is
shown on GET /endpoints, GET /endpoints/{uuid} and /metrics."""

from __future__ import annotations

from typing import Any

from tests.appliance.conftest import Env, event


def _state(count: int, sha: str, source: str = "manager") -> dict[str, Any]:
    return {
        "Event": {
            "System": {
                "Channel": "Heron-Agent",
                "EventID": 9011,
                "Computer": "ws-1",
                "TimeCreated": {"SystemTime": "2026-01-01T00:00:00.000000Z"},
            },
            "EventData": {
                "Message": "rules state",
                "RuleCount": str(count),
                "RulesSha256": sha,
                "RulesUpdated": "2026-01-01T00:00:00.000000Z",
                "RulesSource": source,
            },
        }
    }


def _rules(env: Env, uuid: str) -> Any:
    listed = {e["uuid"]: e for e in env.a("GET", "/endpoints").json["data"]}
    one = env.a("GET", f"/endpoints/{uuid}").json["data"]
    assert listed[uuid]["rules"] == one["rules"]
    return one["rules"]


def _metric(env: Env, name: str) -> float:
    text = env.a("GET", "/metrics").text
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith(name + " ")))


def test_reported_rule_state_is_visible_per_endpoint_and_in_metrics(env: Env) -> None:
    rule = {
        "Name": "R",
        "Meta": {"Events": {"Security": [4688]}, "Criticality": 5, "Schema": "2.0.0"},
        "Matches": [],
        "Condition": "",
    }
    assert env.a("POST", "/rules", json=[rule]).status_code == 200
    served = env.ctx.content.rules_text()[1]
    a, b = env.enroll("ws-1"), env.enroll("ws-2")
    env.enroll("ws-3")
    assert _rules(env, a.uuid) is None  # never reported
    assert _metric(env, "heron_endpoints_rules_unknown") == 3
    # the last state of a batch wins; other events around it are stored as usual
    assert (
        env.post_logs(a, [_state(0, "", "local"), event(1), _state(1, served)]).status_code == 200
    )
    assert env.post_logs(b, [_state(0, "")]).status_code == 200
    got = _rules(env, a.uuid)
    assert got["count"] == 1 and got["sha256"] == served and got["status"] == "ok"
    assert got["updated"] == "2026-01-01T00:00:00.000000Z" and got["reported"]
    assert _rules(env, b.uuid)["status"] == "no-rules"
    assert _metric(env, "heron_endpoints_rules_no_rules") == 1
    assert _metric(env, "heron_endpoints_rules_unknown") == 1
    # the manager serves another set: a's hash is outdated until it reports the new one
    rule["Name"] = "R2"
    assert env.a("POST", "/rules", json=[rule]).status_code == 200
    assert _rules(env, a.uuid)["status"] == "outdated"
    assert _metric(env, "heron_endpoints_rules_outdated") == 1
    new = env.ctx.content.rules_text()[1]
    env.post_logs(a, [_state(2, new)])
    assert _rules(env, a.uuid)["status"] == "ok"
    # the state survives a restart of the manager's services (fleet store)
    from appliance.services.rulestate import RuleStates

    assert RuleStates(env.ctx.store).get(a.uuid, new)["count"] == 2  # type: ignore[index]


def test_malformed_rule_states_are_ignored(env: Env) -> None:
    a = env.enroll("ws-1")
    bad = _state(3, "x" * 64)
    bad["Event"]["EventData"]["RuleCount"] = "many"
    env.post_logs(
        a,
        [
            bad,
            {"Event": {"System": {"Channel": "Heron-Agent", "EventID": 9011}, "EventData": "nope"}},
        ],
    )
    assert _rules(env, a.uuid) is None
    env.post_logs(a, [_state(3, "X" * 64)])
    assert _rules(env, a.uuid)["sha256"] == ""  # not a sha256: not kept
