"""Engine semantics: scoring, filters, output shape, Meta filters, stats (docs/reference/gene.md
§6–§7)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

import rules
from rules.event import Event, event_hash, event_time

SYSMON = "Microsoft-Windows-Sysmon/Operational"


def rule(
    name: str,
    *,
    crit: int = 5,
    events: Any = None,
    matches: tuple[str, ...] = (),
    condition: str = "",
    **meta: Any,
) -> dict[str, Any]:
    return {
        "Name": name,
        "Meta": {
            "Events": {SYSMON: [1]} if events is None else events,
            "Criticality": crit,
            "Schema": "2.0.0",
            **meta,
        },
        "Matches": list(matches),
        "Condition": condition,
    }


def engine(*rs: dict[str, Any], **kw: Any) -> rules.Engine:
    return rules.Engine(rules.loads("\n".join(json.dumps(r) for r in rs)), **kw)


def event(
    eid: Any = "1", channel: Any = SYSMON, computer: str = "PC", **data: Any
) -> dict[str, Any]:
    return {
        "Event": {
            "System": {
                "Channel": channel,
                "EventID": eid,
                "Computer": computer,
                "TimeCreated": {"SystemTime": "2019-04-27T15:57:25.8688632Z"},
            },
            "EventData": data,
        },
        "Extra": {"kept": True},
    }


def test_all_rules_contribute_in_load_order_and_criticality_caps() -> None:
    e = engine(rule("Z", crit=7), rule("A", crit=6), rule("M", crit=-2))
    ev = event()
    det = e.match(ev)
    assert det is not None
    assert det.signatures == ("Z", "A", "M") and det.criticality == 8  # min(10,13) - 2
    assert ev["Event"]["Detection"] == {
        "Signature": ["Z", "A", "M"],
        "Criticality": 8,
        "Actions": [],
    }
    assert ev["Extra"] == {"kept": True}


def test_filter_only_events_are_untouched() -> None:
    e = engine(rule("F", crit=0, Filter=True), rule("N", events={SYSMON: [2]}))
    ev = event()
    det = e.match(ev)
    assert det == rules.Detection(filtered=True)
    assert "Detection" not in ev["Event"]
    both = engine(rule("F", Filter=True), rule("N")).match(event())
    assert both is not None and both.filtered and both.signatures == ("N",)


def test_no_match_returns_none() -> None:
    assert engine(rule("A", events={SYSMON: [2]})).match(event()) is None


def test_events_filter_channels_ids_and_qualifiers() -> None:
    e = engine(
        rule("Any", events={SYSMON: []}),
        rule("Eid7", events={SYSMON: [7, 16]}),
        rule("Everything", events={}),
        rule("Sec", events={"Security": []}),
    )
    assert e.match(event("7")).signatures == ("Any", "Eid7", "Everything")
    assert e.match(event("0x10")).signatures == ("Any", "Eid7", "Everything")  # base 0
    assert e.match(event("1")).signatures == ("Any", "Everything")
    assert e.match(event("\u0667")).signatures == ("Any", "Everything")  # non-ASCII digit → 0
    assert e.match(event(7.0)).signatures == ("Any", "Eid7", "Everything")  # %v of 7.0 is 7
    # GENE: an EventID object with Qualifiers stringifies to map[...] → EventID 0
    assert e.match(event({"Qualifiers": "16384", "Value": "7"})).signatures == ("Any", "Everything")
    assert e.match(event("1", channel={})).signatures == ("Everything",)


def test_computers_filter_is_exact() -> None:
    e = engine(rule("C", Computers=["PC"]))
    assert e.match(event(computer="PC")) is not None
    assert e.match(event(computer="pc")) is None


def test_attack_dedup_actions_union_and_default_actions() -> None:
    attack = [{"ID": "T1", "Tactic": "x", "Reference": "r"}]
    rs = [rule("A", crit=4, ATTACK=attack), rule("B", crit=4, ATTACK=attack)]
    rs[0]["Actions"] = ["kill", "report"]
    rs[1]["Actions"] = ["report", "memdump"]
    e = engine(*rs, show_attack=True, default_actions={"high": ["dump"], "medium": ["brief"]})
    ev = event()
    det = e.match(ev)
    assert det.criticality == 8 and det.actions == ("kill", "report", "memdump", "dump")
    assert ev["Event"]["Detection"]["ATTACK"] == [
        {"ID": "T1", "Tactic": "x", "Description": "", "Reference": "r"}
    ]
    with pytest.raises(ValueError, match="severity band"):
        rules.Engine(default_actions={"urgent": ["kill"]})


def test_empty_condition_without_matches_matches_everything_but_with_matches_fails() -> None:
    assert engine(rule("All")).match(event()) is not None
    with pytest.raises(rules.ConditionError, match="empty condition"):
        engine(rule("Bad", matches=("$a: Image = 'x'",)))


def test_stats_and_counters() -> None:
    e = engine(rule("A", matches=("$a: Image ~= 'cmd'",), condition="$a"), timing_sample=1)
    e.match(event(Image="cmd.exe"))
    e.match(event(Image="calc.exe"))
    assert e.stats()["A"]["hits"] == 1 and e.stats()["A"]["time_ns"] > 0
    assert (e.scanned, e.positives, e.rule_count) == (2, 1, 1)


def test_kunai_events() -> None:
    r = rule(
        "K",
        events={"kunai": []},
        matches=("$a: exe/file = '/usr/bin/ping'", "$b: /data/exe/md5 = 'ab'"),
        condition="$a and $b",
    )
    ev = {
        "info": {
            "event": {"source": "kunai", "id": 1},
            "host": {"hostname": "h"},
            "utc_time": "2024-01-01T00:00:00Z",
        },
        "data": {"exe": {"file": "/usr/bin/ping", "md5": "ab"}},
    }
    det = engine(r).match(ev)
    assert det is not None and ev["detection"]["signature"] == ["K"]


def test_non_microsoft_channel_needs_logtype_or_absolute_paths() -> None:
    with pytest.raises(rules.MatchSyntaxError, match="log format"):
        engine(
            rule("S", events={"System": [7045]}, matches=("$a: ImagePath = 'x'",), condition="$a")
        )
    ok = engine(
        rule(
            "S",
            events={"System": [7045]},
            LogType="winevt",
            matches=("$a: ImagePath = 'x'",),
            condition="$a",
        )
    )
    assert ok.match(event("7045", channel="System", ImagePath="x")) is not None


def test_event_accessors() -> None:
    ev = Event(event({"Qualifiers": "0", "Value": "1040"}, Image="x"))
    assert ev.channel == SYSMON and ev.event_id == 1040 and ev.computer == "PC"
    assert ev.get("/Event/EventData/Image") == "x" and ev.get("/Event/Nope") is None
    assert ev.timestamp == datetime(2019, 4, 27, 15, 57, 25, 868863, tzinfo=UTC)
    assert event_time({"Event": {}}) is None
    assert event_time({"info": {"utc_time": "2024-01-01T01:00:00+01:00"}}) == datetime(
        2024, 1, 1, tzinfo=UTC
    )


def test_event_hash_ignores_edr_data_and_key_order() -> None:
    a = event(Image="x")
    b = copy.deepcopy(a)
    b["Event"]["EdrData"] = {"Endpoint": "u"}
    c = json.loads(json.dumps(a, sort_keys=True))
    assert event_hash(a) == event_hash(b) == event_hash(c)
    assert event_hash(a) != event_hash(event(Image="y"))
    assert len(event_hash(a)) == 40


def test_public_surface_is_pinned() -> None:
    assert rules.__all__ == [
        "ConditionError",
        "Detection",
        "DuplicateRuleError",
        "Engine",
        "Event",
        "MatchSyntaxError",
        "RegexError",
        "Rule",
        "RuleError",
        "RuleRuntimeError",
        "RuleSet",
        "RuleSyntaxError",
        "SchemaError",
        "TemplateError",
        "event_hash",
        "event_time",
        "load",
        "loads",
    ]
    assert all(
        issubclass(getattr(rules, n), rules.RuleError)
        for n in rules.__all__
        if n.endswith("Error") and n != "RuleError"
    )
