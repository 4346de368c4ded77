"""The Sigma block's literal index only skips rules that cannot match (rules/sigma/block.py)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

import rules
from rules.engine import _system
from rules.event import parse_event_id

from .conftest import SHARED, need, sysmon_event

ORACLE_EVENTS = SHARED / "gene-oracle"  # HERON_SHARED or ../shared


def _events() -> list[dict[str, Any]]:
    path = need(ORACLE_EVENTS / "corpus-events.jsonl.gz")
    with gzip.open(path) as fh:
        return [orjson.loads(line)["event"] for line in fh]


@pytest.fixture(scope="module")
def sigmahq(sigma_dir: Path) -> rules.Engine:
    ruleset = rules.load([sigma_dir], collect_errors=True, sigma_status=None)
    engine = rules.Engine(None, timing=False)
    engine.load(ruleset, collect_errors=True)
    return engine


def test_index_equals_every_rule_on_the_corpus(sigmahq: rules.Engine) -> None:
    """Block (index + two literal groups + keyword automaton) == each rule run on its own."""
    compared = fired = 0
    for event in _events():
        channel, raw_id, _ = _system(event) or ("", None, None)
        eid = 0 if raw_id is None else parse_event_id(raw_id)
        candidates, group = sigmahq._candidates(channel, eid)
        if group is None:
            continue
        ev = event["Event"]
        ed = ev.get("EventData") if isinstance(ev.get("EventData"), dict) else {}
        fast = [c.name for c in group(event, ed, None)]
        slow = [c.name for c in candidates if c.fn is not None and c.fn(event, ed)]
        assert fast == slow, (channel, eid, ev.get("EventData"))
        compared += 1
        fired += bool(slow)
    assert compared > 5000 and fired > 500


def _rule(detection: str, title: str = "t") -> str:
    return (
        f"title: {title}\nid: 11111111-2222-3333-4444-{abs(hash(title)) % 10**12:012d}\n"
        f"status: test\nlogsource: {{product: windows, category: process_creation}}\n"
        f"detection:\n{detection}level: high\n"
    )


def _event(**fields: str) -> dict[str, Any]:
    return sysmon_event(fields)


def test_two_literal_groups_and_keywords() -> None:
    text = "---\n".join(
        [
            _rule(
                "  a:\n    ParentImage|endswith: '\\cmd.exe'\n"
                "  b:\n    Image|endswith: '\\chcp.com'\n  condition: a and b\n",
                "both",
            ),
            _rule(
                "  k:\n    - 'sekurlsa::'\n    - 'Kiwi*Printer'\n    - 4711\n  condition: k\n",
                "keywords",
            ),
        ]
    )
    for timing in (False, True):
        engine = rules.Engine(rules.loads(text), timing=timing, timing_sample=1)

        def names(**fields: str) -> set[str]:
            det = engine.evaluate(_event(**fields))  # noqa: B023 - used in this iteration
            return set(det.signatures) if det else set()

        assert names(ParentImage="C:\\cmd.exe", Image="C:\\x\\CHCP.COM") == {"both"}
        assert names(ParentImage="C:\\cmd.exe", Image="C:\\x\\more.com") == set()
        assert names(ParentImage="C:\\explorer.exe", Image="C:\\chcp.com") == set()
        assert names(CommandLine="x SEKURLSA::logonpasswords") == {"keywords"}
        assert names(Description="kiwi legit printer") == {"keywords"}
        assert names(ProcessId="94711") == {"keywords"}
        assert names(CommandLine="kiwi", Description="printer") == set()


def test_timed_sample_runs_the_block_and_times_sigma_rules(sigma_dir: Path) -> None:
    ruleset = rules.load([sigma_dir / "rules" / "windows" / "process_creation"], sigma_status=None)
    plain = rules.Engine(ruleset, timing=False)
    timed = rules.Engine(ruleset, timing=True, timing_sample=1)
    events = [e for e in _events() if e["Event"]["System"].get("EventID") == "1"][:300]
    for event in events:
        a, b = plain.evaluate(event), timed.evaluate(event)
        assert (a and a.signatures) == (b and b.signatures)
    assert sum(s["time_ns"] for s in timed.stats().values()) > 0


def test_case_folded_regex_literals_do_not_skip_matches() -> None:
    """`|re|i` (and `(?i)`) also match ſ/ı/İ for s/i, which lower-case to other text."""
    text = "---\n".join(
        [
            _rule("  s:\n    CommandLine|re|i: 'invoke-posh'\n  condition: s\n", "flag"),
            _rule("  s:\n    CommandLine|re: '(?i)mimikatz'\n  condition: s\n", "inline"),
            _rule("  s:\n    CommandLine|re: 'Ωmega'\n  condition: s\n", "cased"),
        ]
    )
    engine = rules.Engine(rules.loads(text), timing=False)
    for value, want in [
        ("x INVOKE-POSH", {"flag"}),
        ("x \u0131nvoke-po\u017fh", {"flag"}),
        ("x \u0130NVOKE-POSH", {"flag"}),
        ("x mimikatz", {"inline"}),
        ("x m\u0131m\u0131katz", {"inline"}),
        ("Ωmega", {"cased"}),
        ("ωmega", set()),
    ]:
        event = _event(CommandLine=value)
        det = engine.evaluate(event)
        assert (set(det.signatures) if det else set()) == want, value
        slow = {c.name for c in engine.rules if c.fn is not None and c.fn(event, {})}
        assert slow == want, value


def test_renamed_view_merged_only_where_renames_cannot_apply() -> None:
    """Sysmon EID 1 reads process_creation rules through the shared view, unless the event's
    own `Channel` field names Security (then the 4688 renames apply, as each rule alone)."""
    text = "---\n".join(
        [
            _rule("  s:\n    Image|endswith: '\\evil.exe'\n  condition: s\n", "renamed"),
            _rule("  s:\n    CommandLine|contains: 'evil'\n  condition: s\n", "plain"),
        ]
    )
    engine = rules.Engine(rules.loads(text), timing=False)
    for fields, want in [
        ({"Image": "C:\\evil.exe"}, {"renamed"}),
        ({"NewProcessName": "C:\\evil.exe"}, set()),
        ({"Channel": "Security", "NewProcessName": "C:\\evil.exe"}, {"renamed"}),
        ({"Channel": "Security", "Image": "C:\\evil.exe", "CommandLine": "evil"}, {"plain"}),
    ]:
        event = _event(**fields)
        det = engine.evaluate(event)
        assert (set(det.signatures) if det else set()) == want, fields
        slow = {c.name for c in engine.rules if c.fn is not None and c.fn(event, {})}
        assert slow == want, fields
