"""Sigma correlation rules: event_count, value_count, temporal, temporal_ordered."""

from __future__ import annotations

from typing import Any

import pytest

import rules
from rules.sigma import correlation

BASE = """title: Failed logon
name: failed_logon
status: test
logsource: {product: windows, service: security}
detection:
  sel: {EventID: 4625}
  condition: sel
level: low
---
title: Successful logon
name: ok_logon
status: test
logsource: {product: windows, service: security}
detection:
  sel: {EventID: 4624}
  condition: sel
level: low
---
"""


def _ev(eid: int, second: int, user: str = "bob", ip: str = "10.0.0.1") -> dict[str, Any]:
    return {
        "Event": {
            "System": {
                "Channel": "Security",
                "EventID": str(eid),
                "TimeCreated": {
                    "SystemTime": f"2024-01-01T00:{second // 60:02d}:{second % 60:02d}Z"
                },
            },
            "EventData": {"TargetUserName": user, "IpAddress": ip},
        }
    }


def _sigs(engine: rules.Engine, event: dict[str, Any]) -> list[str]:
    det = engine.evaluate(event)
    return list(det.signatures) if det else []


def _engine(corr: str) -> rules.Engine:
    return rules.Engine(rules.loads(BASE + corr))


def test_event_count_with_group_by_and_timespan() -> None:
    engine = _engine("""title: Brute force
correlation:
  type: event_count
  rules: [failed_logon]
  group-by: [TargetUserName]
  timespan: 1m
  condition: {gte: 3}
level: high
""")
    assert _sigs(engine, _ev(4625, 0)) == []  # the base rule is silent (generate: false)
    assert _sigs(engine, _ev(4625, 1, user="alice")) == []
    assert _sigs(engine, _ev(4625, 2)) == []
    assert _sigs(engine, _ev(4625, 3)) == ["Brute force"]
    assert _sigs(engine, _ev(4625, 4)) == []  # state was reset
    # outside the timespan the old events no longer count
    assert _sigs(engine, _ev(4625, 100)) == []
    assert _sigs(engine, _ev(4625, 200)) == []
    assert _sigs(engine, _ev(4625, 300)) == []


def test_value_count_and_generate() -> None:
    engine = _engine("""title: Spray
correlation:
  type: value_count
  rules: [failed_logon]
  group-by: [IpAddress]
  timespan: 5m
  generate: true
  condition: {gte: 3, field: TargetUserName}
level: high
""")
    assert _sigs(engine, _ev(4625, 0, user="a")) == ["Failed logon"]
    assert _sigs(engine, _ev(4625, 1, user="a")) == ["Failed logon"]
    assert _sigs(engine, _ev(4625, 2, user="b")) == ["Failed logon"]
    assert _sigs(engine, _ev(4625, 3, user="c")) == ["Failed logon", "Spray"]


def test_temporal_and_ordered() -> None:
    temporal = _engine("""title: Fail then success
correlation:
  type: temporal
  rules: [failed_logon, ok_logon]
  group-by: [TargetUserName]
  timespan: 1m
level: high
""")
    assert _sigs(temporal, _ev(4624, 0)) == []
    assert _sigs(temporal, _ev(4625, 1)) == ["Fail then success"]
    ordered = _engine("""title: Fail then success ordered
correlation:
  type: temporal_ordered
  rules: [failed_logon, ok_logon]
  group-by: [TargetUserName]
  timespan: 1m
level: high
""")
    assert _sigs(ordered, _ev(4624, 0)) == []
    assert _sigs(ordered, _ev(4625, 1)) == []
    assert _sigs(ordered, _ev(4624, 2)) == ["Fail then success ordered"]


def test_state_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(correlation, "MAX_GROUPS", 5)
    engine = _engine("""title: Many
correlation:
  type: event_count
  rules: [failed_logon]
  group-by: [TargetUserName]
  timespan: 1h
  condition: {gte: 1000}
level: high
""")
    for i in range(50):
        _sigs(engine, _ev(4625, i, user=f"u{i}"))
    corr = [c for c in engine.rules if isinstance(c, correlation.CompiledCorrelation)][0]
    assert len(corr.groups) == 5


def test_unknown_reference_and_window_conditions_are_rejected() -> None:
    with pytest.raises(rules.RuleError, match="unknown rule 'nope'"):
        _engine("""title: Bad
correlation: {type: event_count, rules: [nope], timespan: 1m, condition: {gte: 2}}
level: high
""")
    with pytest.raises(rules.RuleError, match="end of a window"):
        _engine("""title: Quiet
correlation: {type: event_count, rules: [failed_logon], timespan: 1m, condition: {lt: 2}}
level: high
""")
