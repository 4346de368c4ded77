"""rules.validate: issues as data, one check per code."""

from __future__ import annotations

import json

import rules
from rules.validate import Issue, Severity, validate


def _rs(*rs: dict) -> rules.RuleSet:
    return rules.loads("\n".join(json.dumps(r) for r in rs), source="t.gen", collect_errors=True)


def _rule(name: str, **kw: object) -> dict:
    base = {
        "Name": name,
        "Meta": {"Events": {"Security": [4624]}, "Criticality": 5, "Schema": "2.0.0"},
        "Matches": ["$a: LogonType = '3'", "$b: IpAddress = '-'"],
        "Condition": "$a",
    }
    base.update(kw)
    return base


def _codes(issues: list[Issue]) -> list[tuple[str, str | None]]:
    return [(i.code, i.rule) for i in issues]


def test_clean_rule_has_only_the_unused_match_warning() -> None:
    assert _codes(validate(_rs(_rule("A")))) == [("unused-match", "A")]


def test_each_check() -> None:
    meta = {"Events": {"Security": []}, "Criticality": 12, "Schema": "2.0.0", "Author": "x"}
    issues = validate(
        _rs(
            _rule("Quirk", Condition="$a $b"),
            _rule("Dup", Matches=["$a: X = '1'", "$a: X = '2'"], Condition="$a"),
            _rule("Cap", Meta=meta, Condition="$a and $b"),
            _rule("Cont", Matches=["$m: extract('(?P<x>.+)', X) in misp"], Condition="$m"),
            _rule("Broken", Condition="$a and $zz"),
            _rule("Cap"),
            {"Name": "NoSchema", "Meta": {}},
        )
    )
    codes = _codes(issues)
    assert ("load-error", "NoSchema") in codes
    assert ("condition-quirk", "Quirk") in codes
    assert ("duplicate-match", "Dup") in codes
    assert ("severity-capped", "Cap") in codes and ("unknown-meta-key", "Cap") in codes
    assert ("unknown-container", "Cont") in codes
    assert ("compile-error", "Broken") in codes
    assert ("duplicate-name", "Cap") in codes
    errors = [i for i in issues if i.severity is Severity.ERROR]
    assert {i.rule for i in errors} == {"NoSchema", "Broken", "Cap"}
    broken = next(i for i in issues if i.code == "compile-error")
    assert str(broken).startswith("ERROR compile-error rule 'Broken' in t.gen:5:")
    assert (
        validate(
            _rs(_rule("Cont", Matches=["$m: extract('(?P<x>.+)', X) in misp"], Condition="$m")),
            containers=["misp"],
        )
        == []
    )


def test_gene_rules_have_no_errors(gene_rules_dir) -> None:  # type: ignore[no-untyped-def]
    issues = validate(
        rules.load(gene_rules_dir / "rules", collect_errors=True),
        containers=["blacklist", "whitelist", "misp"],
    )
    assert not [i for i in issues if i.severity is Severity.ERROR]
    assert ("condition-quirk", "LargeCL512") in _codes(issues)
