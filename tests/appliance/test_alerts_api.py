"""Alert triage: keyset paging over the real fleet store, and the /alerts admin API in process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from appliance.core.errors import InvalidParam
from appliance.store import Store
from appliance.store.alerts import AlertFilter, AlertStatus

from .conftest import Env, event

EP = "00000000-0000-4000-8000-00000000000a"


@pytest.fixture
def store() -> Iterator[Store]:
    with Store(":memory:") as s:
        # 250 detections, many sharing a timestamp (ties are broken by the key, not lost)
        rows = [
            (EP, 1000.0 + i // 3, 2000.0, f"{i:04x}", [f"R{i % 4}"], i % 11, None)
            for i in range(250)
        ]
        s.detections.add_many(rows)
        s.db.write(lambda cur: None)
        yield s


def _walk(store: Store, f: AlertFilter, limit: int) -> list[dict[str, object]]:
    seen: list[dict[str, object]] = []
    cursor = None
    while True:
        page = store.alerts.page(f, limit=limit, cursor=cursor)
        assert page["total"] == 250 or f.status != "open" or page["total"] >= len(seen)
        seen += page["alerts"]
        cursor = page["next"]
        if cursor is None:
            return seen


@pytest.mark.parametrize("sort", ["newest", "critical"])
def test_cursor_paging_visits_every_row_once_in_order(store: Store, sort: str) -> None:
    rows = _walk(store, AlertFilter(sort=sort), limit=17)
    assert len(rows) == 250 and len({r["event_hash"] for r in rows}) == 250
    if sort == "newest":
        keys = [r["ts"] for r in rows]
    else:
        keys = [(r["criticality"], r["ts"]) for r in rows]  # type: ignore[assignment]
    assert keys == sorted(keys, reverse=True)


def test_status_filters_and_updates(store: Store) -> None:
    changes = store.alerts.update(
        [(EP, "0001"), (EP, "0002")], by="ana", now=5.0, status=AlertStatus.FALSE_POSITIVE
    )
    assert changes[0]["status"] == ["new", "false_positive"]
    assert store.alerts.page(AlertFilter())["total"] == 248  # the open queue
    fp = store.alerts.page(AlertFilter(status="false_positive"))
    assert {a["event_hash"] for a in fp["alerts"]} == {"0001", "0002"}
    assert fp["alerts"][0]["updated_by"] == "ana"
    store.alerts.update([(EP, "0003")], by="root", now=6.0, assignee="ana", comment="mine")
    one = store.alerts.get(EP, "0003")
    assert one["assignee"] == "ana" and one["status"] == "new"
    assert one["comments"] == [{"ts": 6.0, "author": "root", "text": "mine"}]
    assert store.alerts.page(AlertFilter(assignee="ana"))["total"] == 1
    assert store.alerts.page(AlertFilter(signature="R1", status="all"))["total"] == 63
    assert store.alerts.page(AlertFilter(min_criticality=10, status="all"))["total"] == 22


def test_bad_cursor_and_filters_are_refused(store: Store) -> None:
    with pytest.raises(InvalidParam):
        store.alerts.page(AlertFilter(), cursor="not-a-cursor")
    cursor = store.alerts.page(AlertFilter(), limit=1)["next"]
    with pytest.raises(InvalidParam):  # a newest-first cursor used with the critical order
        store.alerts.page(AlertFilter(sort="critical"), cursor=cursor)
    with pytest.raises(InvalidParam):
        AlertFilter(status="solved")


def _detect(env: Env) -> tuple[str, str]:
    agent = env.enroll()
    env.post_logs(agent, [event(1, signature="Evil", crit=9), event(2, signature="Meh", crit=3)])
    env.ctx.store.db.write(lambda cur: None)
    page = env.a("GET", "/alerts").json["data"]
    assert page["total"] == 2 and page["next"] is None
    assert [a["signatures"] for a in page["alerts"]] in ([["Evil"], ["Meh"]], [["Meh"], ["Evil"]])
    crit = env.a("GET", "/alerts?sort=critical").json["data"]["alerts"]
    assert crit[0]["signatures"] == ["Evil"] and crit[0]["hostname"] == "host-1"
    return agent.uuid, crit[0]["event_hash"]


def test_alert_api_triage_is_audited_and_open_to_analysts(env: Env) -> None:
    uuid, ehash = _detect(env)
    path = f"/alerts/{uuid}/{ehash}"
    res = env.a(
        "POST",
        path,
        key=env.analyst_key,
        json={"status": "in_progress", "assignee": "ana", "comment": "<b>looking</b>"},
    )
    assert res.status_code == 200, res.text
    alert = res.json["data"]
    assert alert["status"] == "in_progress" and alert["assignee"] == "ana"
    first = alert["comments"][0]
    assert first["text"] == "<b>looking</b>" and first["author"] == "ana"
    assert env.a("POST", path, key=env.plugin_key, json={"status": "closed"}).status_code == 403
    assert env.a("POST", path, json={"assignee": "nobody"}).status_code == 404
    assert env.a("POST", path, json={"status": "solved"}).status_code in (400, 422)
    assert env.a("POST", path, json={}).status_code == 422
    assert env.a("POST", f"/alerts/{uuid}/abcd", json={"status": "closed"}).status_code == 404
    assert env.a("GET", f"/alerts/{uuid}/not-hex").status_code == 400
    assert env.a("GET", "/alerts?cursor=zzz").status_code == 400
    env.ctx.store.db.write(lambda cur: None)
    audit = [a for a in env.ctx.store.audit.list() if a["action"] == "alert.update"]
    assert audit and audit[0]["actor"] == "ana" and audit[0]["target"] == f"{uuid}/{ehash}"
    assert audit[0]["detail"]["status"] == ["new", "in_progress"]
    assert audit[0]["detail"]["assignee"] == ["", "ana"]


def test_bulk_change_is_all_or_nothing(env: Env) -> None:
    uuid, ehash = _detect(env)
    hashes = [a["event_hash"] for a in env.a("GET", "/alerts").json["data"]["alerts"]]
    refs = [{"endpoint": uuid, "event_hash": h} for h in hashes]
    unknown = {"endpoint": uuid, "event_hash": "ff"}
    bad = env.a("POST", "/alerts/bulk", json={"alerts": [*refs, unknown], "status": "closed"})
    assert bad.status_code == 404
    assert env.a("GET", "/alerts").json["data"]["total"] == 2  # nothing was closed
    res = env.a("POST", "/alerts/bulk", json={"alerts": refs, "status": "closed"})
    assert res.status_code == 200 and res.json["data"]["changed"] == 2
    assert env.a("GET", "/alerts").json["data"]["total"] == 0
    assert env.a("GET", "/alerts?status=closed").json["data"]["total"] == 2
    assert env.a("POST", "/alerts/bulk", json={"alerts": [], "status": "closed"}).status_code == 422


def _rule(name: str, attack: list[dict[str, str]]) -> dict[str, object]:
    return {
        "Name": name,
        "Tags": [],
        "Meta": {
            "Events": {"Microsoft-Windows-Sysmon/Operational": [1]},
            "Criticality": 5,
            "ATTACK": attack,
            "Schema": "2.0.0",
        },
        "Matches": ["$a: Image ~= 'nope'"],
        "Condition": "$a",
    }


def test_attack_matrix_and_techniques_on_every_alert(env: Env) -> None:
    lsass = {"ID": "T1003.001", "Tactic": "credential-access", "Description": "LSASS Memory"}
    ps = {"ID": "T1059.001", "Tactic": "Execution", "Description": "PowerShell"}
    rules = [_rule("Evil", [lsass, ps]), _rule("Meh", [ps]), _rule("Bare", [])]
    assert env.a("POST", "/rules", json=rules).status_code == 200
    uuid, _ = _detect(env)  # one "Evil" and one "Meh" detection
    alerts = env.a("GET", "/alerts").json["data"]["alerts"]
    assert {tuple(a["signatures"]): a["attack"] for a in alerts} == {
        ("Evil",): ["T1003.001", "T1059.001"],
        ("Meh",): ["T1059.001"],
    }
    m = env.a("GET", "/alerts/attack").json["data"]
    assert [t["tactic"] for t in m["tactics"]] == ["execution", "credential-access"]  # ATT&CK order
    execution = m["tactics"][0]["techniques"][0]
    assert execution["id"] == "T1059.001" and execution["count"] == 2
    assert {r["name"]: r["count"] for r in execution["rules"]} == {"Evil": 1, "Meh": 1}
    assert m["tactics"][1]["techniques"][0]["name"] == "LSASS Memory"
    assert m["detections"] == 2 and m["unmapped"] == 0
    meh = [
        {"endpoint": uuid, "event_hash": a["event_hash"]}
        for a in alerts
        if "Meh" in a["signatures"]
    ]
    env.a("POST", "/alerts/bulk", json={"alerts": meh, "status": "closed"})
    m = env.a("GET", "/alerts/attack?status=open").json["data"]
    assert m["tactics"][0]["techniques"][0]["count"] == 1
    assert env.a("GET", "/alerts/attack?hours=0").status_code == 400


def test_techniques_follow_rule_edits(env: Env) -> None:
    _detect(env)
    assert all(a["attack"] == [] for a in env.a("GET", "/alerts").json["data"]["alerts"])
    rule = _rule("Evil", [{"ID": "T1055", "Tactic": "defense-evasion"}])
    assert env.a("POST", "/rules", json=[rule]).status_code == 200
    got = {tuple(a["signatures"]): a["attack"] for a in _page(env)}
    assert got[("Evil",)] == ["T1055"]
    rule = _rule("Evil", [{"ID": "T1036", "Tactic": "defense-evasion"}])
    assert env.a("POST", "/rules?update=true", json=[rule]).status_code == 200
    got = {tuple(a["signatures"]): a["attack"] for a in _page(env)}
    assert got[("Evil",)] == ["T1036"]


def _page(env: Env) -> list[dict[str, object]]:
    alerts: list[dict[str, object]] = env.a("GET", "/alerts").json["data"]["alerts"]
    return alerts
