"""POST /hunt/rules gives, for every stored event, the Detection `heron scan` gives.

Issue 25: with a Filter rule in the request (gene-rules' `ProcessCreate`), every event the
Filter rule also matched was dropped from the matches (186 of 329 on a real replay).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import rules
from rules import wire
from rules.scan import ScanOptions, build_engine
from tests.appliance.conftest import Env, event

SYSMON = {"Microsoft-Windows-Sysmon/Operational": [1]}


def _rule(name: str, match: str, *, crit: int = 5, filter_: bool = False) -> dict[str, Any]:
    return {
        "Name": name,
        "Meta": {"Events": SYSMON, "Criticality": crit, "Filter": filter_, "Schema": "2.0.0"},
        "Matches": [match],
        "Condition": "$m",
    }


RULES = [
    _rule("Cmd", "$m: Image ~= 'cmd[13]'", crit=4),
    _rule("Three", "$m: CommandLine ~= ' 3$'", crit=8),
    _rule("Known", "$m: extract('(?P<img>.*)', Image) in known", crit=3),
    _rule("ProcessCreate", "$m: Image ~= '.'", filter_=True),
]


def _scan_detections(
    events: list[dict[str, Any]], containers: dict[str, list[str]]
) -> dict[str, dict[str, Any]]:
    """What `heron scan` writes, by command line, with the same rules and containers."""
    engine = rules.Engine(
        rules.loads("\n".join(json.dumps(r) for r in RULES)), containers=containers
    )
    out = {}
    for ev in events:
        ev = copy.deepcopy(ev)
        det = engine.match(ev)
        if det is not None and det.signatures:
            out[ev["Event"]["EventData"]["CommandLine"]] = ev["Event"]["Detection"]
    return out


def test_filter_rules_do_not_hide_detections(env: Env, tmp_path: Any) -> None:
    agent = env.enroll()
    events = [event(i) for i in range(6)]
    env.post_logs(agent, events)
    env.ctx.events.flush()
    known = "C:\\Windows\\System32\\cmd5.exe".lower()
    res = env.a(
        "POST",
        "/hunt/rules",
        key=env.analyst_key,
        json={"rules": RULES, "containers": {"known": [known.upper()]}},
    )
    assert res.status_code == 200, res.text
    data = res.json["data"]
    expected = _scan_detections(events, {"known": [known]})
    assert set(expected) == {"cmd /c 1", "cmd /c 3", "cmd /c 5"}
    got = {m["Event"]["EventData"]["CommandLine"]: m["Event"]["Detection"] for m in data["matches"]}
    assert got == expected
    assert data["scanned"] == 6 and data["detections"] == 3 and data["filtered"] == 3
    assert data["rules"] == 4 and data["containers"] == {"known": 1} and not data["truncated"]
    # heron scan's own engine (rules file + container file) agrees.
    (tmp_path / "r.gen").write_text("\n".join(json.dumps(r) for r in RULES))
    (tmp_path / "known.txt").write_text(known + "\n")
    engine, _ = build_engine(
        ScanOptions(
            rules=(str(tmp_path / "r.gen"),), containers=(("known", str(tmp_path / "known.txt")),)
        )
    )
    for ev in events:
        ev = copy.deepcopy(ev)
        det = engine.match(ev)
        line = ev["Event"]["EventData"]["CommandLine"]
        assert (ev["Event"].get("Detection") if det and det.signatures else None) == expected.get(
            line
        )


def test_limit_truncates_matches_but_counts_every_detection(env: Env) -> None:
    agent = env.enroll()
    env.post_logs(agent, [event(i) for i in range(6)])
    env.ctx.events.flush()
    data = env.a("POST", "/hunt/rules", json={"rules": RULES, "limit": 1}).json["data"]
    assert len(data["matches"]) == 1 and data["detections"] == 2 and data["truncated"]
    assert data["matches"][0]["Event"]["EdrData"]["Endpoint"]["UUID"] == agent.uuid


def test_iocs_match_as_agents_match_them(env: Env) -> None:
    agent = env.enroll()
    env.post_logs(agent, [event(i, extra={"QueryName": f"h{i}.evil.test"}) for i in range(4)])
    env.ctx.events.flush()
    env.ctx.store.iocs.upsert([wire.Ioc("evil.test", "domain", "u1", "g1", "test")], 0.0)
    body = {"rules": [RULES[1]], "iocs": True, "ioc_criticality": 7}
    data = env.a("POST", "/hunt/rules", json=body).json["data"]
    assert data["iocs"] == 1 and data["detections"] == 4
    by_line = {
        m["Event"]["EventData"]["CommandLine"]: m["Event"]["Detection"] for m in data["matches"]
    }
    assert by_line["cmd /c 3"]["Signature"] == ["IoC:domain", "Three"]
    assert by_line["cmd /c 3"]["Criticality"] == 10
    assert by_line["cmd /c 1"]["Signature"] == ["IoC:domain"]
    assert by_line["cmd /c 1"]["Criticality"] == 7
    bad = env.a("POST", "/hunt/rules", json={"rules": RULES, "containers": {"x": "y"}})
    assert bad.status_code in (400, 422)
