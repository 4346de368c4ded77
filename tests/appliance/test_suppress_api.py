"""Suppressions from an alert, tried on stored events, and applied by the manager at ingest."""

from __future__ import annotations

from typing import Any

from .conftest import Env, event

RULE = "SuspiciousCmd"
TECHNIQUE = {"ID": "T1059.003", "Tactic": "execution", "Description": "Windows Command Shell"}


def _detection(i: int, *, user: str = "CORP\\alice", rules: tuple[str, ...] = (RULE,)) -> Any:
    ev = event(i, signature=rules[0], crit=8, extra={"User": user, "ParentImage": "C:\\p.exe"})
    ev["Event"]["Detection"]["Signature"] = list(rules)
    ev["Event"]["Detection"]["ATTACK"] = [TECHNIQUE]
    return ev


def _stored(env: Env) -> None:
    env.ctx.events.flush()
    env.ctx.store.db.write(lambda cur: None)  # barrier: detections rows are written


def _open_alerts(env: Env) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = env.a("GET", "/alerts").json["data"]["alerts"]
    return alerts


def test_alert_carries_the_detections_attack_block(env: Env) -> None:
    agent = env.enroll("ws-1")
    assert env.post_logs(agent, [_detection(1)]).status_code == 200
    _stored(env)
    (alert,) = _open_alerts(env)
    assert alert["attack"] == ["T1059.003"]  # from Detection.ATTACK; no stored rule names it
    one = env.a("GET", f"/alerts/{alert['endpoint']}/{alert['event_hash']}").json["data"]
    assert one["attack"] == ["T1059.003"]


def test_suppress_from_an_alert_then_the_same_event_no_longer_alerts(env: Env) -> None:
    agent = env.enroll("ws-1")
    assert env.post_logs(agent, [_detection(1)]).status_code == 200
    _stored(env)
    (alert,) = _open_alerts(env)
    path = f"/alerts/{alert['endpoint']}/{alert['event_hash']}/suppress"
    res = env.a("POST", path, json={"match": ["image", "command_line"], "close": True})
    assert res.status_code == 200, res.text
    data = res.json["data"]
    (sup,) = data["suppressions"]
    assert sup["rule"] == RULE and sup["image_prefix"] == "C:\\Windows\\System32\\cmd1.exe"
    assert sup["command_line_regex"] == "^cmd\\ /c\\ 1$"
    assert data["alert"]["status"] == "false_positive"
    assert any(a["action"] == "alert.suppress" for a in env.a("GET", "/audit").json["data"])
    # the agent sends the same event again (it has not fetched the suppression yet)
    assert env.post_logs(agent, [_detection(1), _detection(2)]).status_code == 200
    _stored(env)
    assert [a["event_hash"] for a in _open_alerts(env)] != [alert["event_hash"]]
    assert len(_open_alerts(env)) == 1  # only event 2 (another command line) alerts
    found = env.a("GET", "/search", params={"q": '"cmd /c 1"'}).json["data"]
    assert found["total"] == 2  # the suppressed copy is stored, as a plain event
    assert env.ctx.metrics.value("heron_detections_suppressed_total") == 1
    # and the agents of its group get it at their next update check
    assert env.e("GET", "/suppressions", agent).json == [sup]


def test_partial_suppression_keeps_the_other_rules(env: Env) -> None:
    agent = env.enroll("ws-1")
    env.a("POST", "/suppressions", json={"rule": RULE, "user": "corp\\alice"})
    assert env.post_logs(agent, [_detection(1, rules=(RULE, "Other"))]).status_code == 200
    _stored(env)
    (alert,) = _open_alerts(env)
    assert alert["signatures"] == ["Other"]


def test_suppress_refuses_rules_and_fields_the_alert_does_not_have(env: Env) -> None:
    agent = env.enroll("ws-1")
    ev = _detection(1)
    del ev["Event"]["EventData"]["User"]
    env.post_logs(agent, [ev])
    _stored(env)
    (alert,) = _open_alerts(env)
    path = f"/alerts/{alert['endpoint']}/{alert['event_hash']}/suppress"
    res = env.a("POST", path, json={"rules": ["NotThisOne"]})
    assert res.status_code == 422 and "did not fire" in res.text
    res = env.a("POST", path, json={"match": ["user"]})
    assert res.status_code == 422 and "no User" in res.text
    res = env.a("POST", path, json={"match": ["hostname"]})
    assert res.status_code in (400, 422)
    missing = f"/alerts/{alert['endpoint']}/{'0' * 40}/suppress"
    assert env.a("POST", missing, json={}).status_code == 404
    assert env.a("GET", "/suppressions").json["data"] == []  # nothing saved by a refusal


def test_suppression_tried_on_stored_detections_before_saving(env: Env) -> None:
    agent = env.enroll("ws-1")
    batch = [_detection(i, user="CORP\\svc" if i % 2 else "CORP\\alice") for i in range(10)]
    assert env.post_logs(agent, batch).status_code == 200
    _stored(env)
    res = env.a("POST", "/suppressions/test", json={"rule": RULE, "user": "corp\\svc"})
    assert res.status_code == 200, res.text
    data = res.json["data"]
    assert (data["scanned"], data["matched"], data["truncated"]) == (10, 5, False)
    assert all(s["signatures"] == [RULE] for s in data["samples"])
    bad = env.a("POST", "/suppressions/test", json={"rule": RULE})
    assert bad.status_code == 422 and "at least one of" in bad.text
    assert env.a("POST", "/suppressions/test", json={"rule": RULE, "days": 0}).status_code == 422
    assert env.a("GET", "/suppressions").json["data"] == []  # a test saves nothing
