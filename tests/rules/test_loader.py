"""Rule decoding and loading: strictness, errors with locations, templates, walk order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rules
from rules.errors import DuplicateRuleError, RuleSyntaxError, SchemaError, TemplateError
from rules.loader import read_container, walk_rule_files

GOOD = {
    "Name": "A",
    "Meta": {"Events": {"Security": [4624]}, "Criticality": 3, "Schema": "2.0.0"},
    "Matches": ["$a: LogonType = '3'"],
    "Condition": "$a",
}


def _text(*rules_: dict) -> str:
    return "\n".join(json.dumps(r) for r in rules_)


def test_stream_of_pretty_and_single_line_objects() -> None:
    other = {**GOOD, "Name": "B"}
    text = json.dumps(GOOD, indent=2) + "  " + json.dumps(other)
    assert rules.loads(text).names == ["A", "B"]


def test_keys_are_case_insensitive_last_wins_and_severity_accepted() -> None:
    rule = {
        "name": "A",
        "meta": {"events": {"Security": []}, "severity": 12, "schema": "2.1"},
        "matches": [],
        "condition": "",
        "Name": "Z",
    }
    loaded = rules.loads(json.dumps(rule)).rules[0]
    assert loaded.name == "Z"
    assert loaded.criticality == 10 and loaded.meta.severity_key == "Severity"


@pytest.mark.parametrize(
    ("mutate", "error", "reason"),
    [
        (lambda r: r["Meta"].pop("Schema"), SchemaError, "expecting rule version >= 2.0.0"),
        (lambda r: r["Meta"].update(Schema="1.9.9"), SchemaError, "2.0.0"),
        (lambda r: r["Meta"].update(Events={"Security": ["1"]}), RuleSyntaxError, "integer"),
        (lambda r: r["Meta"].update(EventIDs=[1]), RuleSyntaxError, "old v1"),
        (lambda r: r["Meta"].update(OSs=["beos"]), RuleSyntaxError, "invalid OS"),
        (lambda r: r.update(Matches="x"), RuleSyntaxError, "list of strings"),
    ],
)
def test_bad_rules_name_file_line_rule_and_reason(tmp_path: Path, mutate, error, reason) -> None:
    bad = json.loads(json.dumps(GOOD))
    bad["Name"] = "Bad"
    mutate(bad)
    path = tmp_path / "x.gen"
    path.write_text(json.dumps(GOOD) + "\n\n" + json.dumps(bad) + "\n")
    with pytest.raises(error) as info:
        rules.load(path)
    err = info.value
    assert (err.source, err.line, err.rule) == (str(path), 3, "Bad")
    assert reason in err.reason
    assert f"{path}:3" in str(err) and "'Bad'" in str(err)


def test_json_syntax_error_has_line(tmp_path: Path) -> None:
    path = tmp_path / "x.gen"
    path.write_text(json.dumps(GOOD) + "\n{oops\n")
    with pytest.raises(RuleSyntaxError, match="invalid JSON") as info:
        rules.load(path)
    assert info.value.line == 2


def test_collect_errors_keeps_going(tmp_path: Path) -> None:
    path = tmp_path / "x.gen"
    path.write_text(_text({**GOOD, "Meta": {}}, {**GOOD, "Name": "B"}, GOOD))
    ruleset = rules.load(path, collect_errors=True)
    assert ruleset.names == ["B", "A"]
    assert [type(e) for e in ruleset.errors] == [SchemaError]


def test_duplicate_names(tmp_path: Path) -> None:
    path = tmp_path / "x.gen"
    path.write_text(_text(GOOD, GOOD))
    with pytest.raises(DuplicateRuleError, match="already exists"):
        rules.load(path)


def test_compile_errors_are_located() -> None:
    bad = {**GOOD, "Name": "C", "Condition": "$a and $zz"}
    with pytest.raises(rules.ConditionError) as info:
        rules.Engine(rules.loads(_text(bad), source="mem.gen"))
    assert info.value.rule == "C" and info.value.source == "mem.gen"
    engine = rules.Engine()
    errors = engine.load(rules.loads(_text(bad, GOOD)), collect_errors=True)
    assert len(errors) == 1 and engine.rule_count == 1


def test_walk_order_files_first_then_subdirs_reverse(tmp_path: Path) -> None:
    for rel in ("b.gen", "a.gene", "x.txt", "sub1/c.gen", "sub2/d.gen", "sub2/deep/e.gen"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("")
    names = [p.relative_to(tmp_path).as_posix() for p in walk_rule_files(tmp_path)]
    assert names == ["a.gene", "b.gen", "sub2/d.gen", "sub2/deep/e.gen", "sub1/c.gen"]


def test_templates_are_substituted_in_matches_only(tmp_path: Path) -> None:
    (tmp_path / "t.toml").write_text("exe = '(?i:\\\\cmd\\.exe)'\n")
    rule = {
        **GOOD,
        "Matches": ["$a: Image ~= '{{exe}}'"],
        "Condition": "$a",
        "Meta": {**GOOD["Meta"], "Events": {"Microsoft-Windows-Sysmon/Operational": [1]}},
    }
    (tmp_path / "r.gen").write_text(json.dumps(rule))
    loaded = rules.load(tmp_path).rules[0]
    assert loaded.matches == ("$a: Image ~= '(?i:\\\\cmd\\.exe)'",)
    (tmp_path / "bad.toml").write_text("[table]\nx = 1\n")
    with pytest.raises(TemplateError):
        rules.load(tmp_path)


def test_disabled_rules_are_skipped_by_the_engine() -> None:
    off = {**GOOD, "Name": "Off", "Meta": {**GOOD["Meta"], "Disable": True}}
    ruleset = rules.loads(_text(GOOD, off))
    assert ruleset.names == ["A", "Off"]
    assert rules.loads(_text(GOOD, off), skip_disabled=True).names == ["A"]
    assert rules.Engine(ruleset).rule_count == 1


def test_read_container_keeps_every_line(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_bytes(b"A\r\n\nb \nlast")
    assert read_container(path) == ["A", "", "b ", "last"]


def test_compiled_gen_round_trips(compiled_ruleset: rules.RuleSet) -> None:
    engine = rules.Engine(compiled_ruleset)
    again = rules.loads(engine.rules_text())
    assert [r.to_dict() for r in again] == [r.to_dict() for r in compiled_ruleset]
