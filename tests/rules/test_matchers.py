"""Match-string lexing and operator semantics (docs/reference/gene.md §3, §4)."""

from __future__ import annotations

from typing import Any

import pytest

import rules
from rules.errors import MatchSyntaxError, RegexError
from rules.event import go_string
from rules.goparse import parse_float, parse_int
from rules.goregex import compile_go
from rules.matchers import ContainerMatch, FieldMatch, IndirectMatch, parse_match

BASE = ("Event", "EventData")
CH = "Microsoft-Sysmon"


def _event(**data: Any) -> dict[str, Any]:
    return {
        "Event": {
            "System": {
                "Channel": CH,
                "EventID": "1",
                "Computer": "H",
                "TimeCreated": {"SystemTime": "2024-01-01T00:00:00Z"},
            },
            "EventData": data,
        }
    }


def _rule(*matches: str, condition: str | None = None, containers: Any = None) -> rules.Engine:
    names = [m.split(":")[0] for m in matches]
    cond = condition if condition is not None else " and ".join(names)
    text = rules.loads(
        '{"Name":"T","Meta":{"Events":{"Microsoft-Sysmon":[1]},"Schema":"2.0.0","Criticality":5},'
        f'"Matches":{__import__("json").dumps(list(matches))},"Condition":"{cond}"}}'
    )
    return rules.Engine(text, containers=containers)


def _hit(engine: rules.Engine, **data: Any) -> bool:
    det = engine.match(_event(**data))
    return bool(det and det.signatures)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1, "1"),
        (4624, "4624"),
        (1234567, "1.234567e+06"),
        (123456789012, "1.23456789012e+11"),
        (1e20, "1e+20"),
        (0.1, "0.1"),
        (-0.0, "-0"),
        (None, "<nil>"),
        (True, "true"),
        (["a", 1], "[a 1]"),
        ({"b": 1, "a": "x"}, "map[a:x b:1]"),
        ("s", "s"),
    ],
)
def test_go_string(value: Any, text: str) -> None:
    assert go_string(value) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("010", 8),
        ("0x1F", 31),
        ("1_000", 1000),
        ("-0x10", -16),
        ("0b101", 5),
        ("0o17", 15),
        ("08", None),
        (" 5", None),
        ("_1", None),
        ("1_", None),
        ("9223372036854775808", None),
    ],
)
def test_parse_int_is_go_base0(text: str, value: int | None) -> None:
    assert parse_int(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("08", 8.0),
        ("09", 9.0),
        ("010", 8.0),
        ("0x1p-2", 0.25),
        ("1.5e3", 1500.0),
        ("1e400", None),
        ("abc", None),
        ("", None),
    ],
)
def test_parse_float_is_gene_parse_to_float(text: str, value: float | None) -> None:
    assert parse_float(text) == value


def test_value_runs_to_last_quote_and_quotes_are_trimmed() -> None:
    m = parse_match("$t: \"c'est\" = 'c'est'", BASE)
    assert isinstance(m, FieldMatch) and m.value == "c'est" and m.path == (*BASE, "c'est")
    assert parse_match("$q: Q = ''quoted''", BASE).value == "quoted"  # type: ignore[union-attr]


def test_whitespace_after_operator_is_required() -> None:
    with pytest.raises(MatchSyntaxError, match="unknown match statement"):
        parse_match("$a: Image ~='x'", BASE)


def test_relative_path_splits_but_container_operand_is_one_key() -> None:
    assert parse_match("$a: Nested/Deep = 'x'", BASE).path == (*BASE, "Nested", "Deep")
    cm = parse_match("$c: extract('(?P<x>.*)', Nested/Deep) in bl", BASE, frozenset({"bl"}))
    assert isinstance(cm, ContainerMatch) and cm.path == (*BASE, "Nested/Deep")


def test_indirect_match() -> None:
    m = parse_match("$s: SourceImage = @TargetImage", BASE)
    assert isinstance(m, IndirectMatch)
    engine = _rule("$s: SourceImage = @TargetImage")
    assert _hit(engine, SourceImage="a", TargetImage="a")
    assert not _hit(engine, SourceImage="a", TargetImage="b")
    assert not _hit(engine, SourceImage="a")


def test_equality_is_exact_and_case_sensitive() -> None:
    engine = _rule("$a: Image = 'C:\\cmd.exe'")
    assert _hit(engine, Image="C:\\cmd.exe")
    assert not _hit(engine, Image="c:\\cmd.exe")
    assert not _hit(engine, Image="C:\\cmd.exe\n")  # Go $ is end of text


def test_missing_field_is_false_and_its_negation_true() -> None:
    engine = _rule("$a: Image = 'x'", condition="!$a")
    assert _hit(engine, Other="y")


def test_numbers_compare_as_go_formats_them() -> None:
    engine = _rule("$a: Pid = '1234567'")
    assert not _hit(engine, Pid=1234567)  # %v gives 1.234567e+06
    assert _rule("$a: Pid = '4624'").match(_event(Pid=4624)) is not None


def test_flags_and_comparisons() -> None:
    assert _hit(_rule("$a: LogonId &= '1'"), LogonId="0x000003e7")
    assert _hit(_rule("$a: LogonId >= '0x000003e7'"), LogonId="0x000003e7")
    assert _hit(_rule("$a: LogonId <= '0x000003e7'"), LogonId="0x000003e7")
    assert _hit(_rule("$a: N > '7'"), N="010")  # octal 8
    assert not _hit(_rule("$a: N > '7'"), N=" 9")
    assert not _hit(_rule("$a: N < '1'"), N="NaN")
    with pytest.raises(MatchSyntaxError):
        _rule("$a: N > 'abc'")
    with pytest.raises(MatchSyntaxError):
        _rule("$a: N &= '1.5'")


def test_regex_is_go_dialect() -> None:
    assert _hit(_rule("$a: X ~= 'exe$'"), X="a.exe")
    assert not _hit(_rule("$a: X ~= 'exe$'"), X="a.exe\n")
    assert not _hit(_rule("$a: X ~= '^\\w+$'"), X="é")  # \w is ASCII in RE2
    assert _hit(_rule("$a: X ~= '(?i)É'"), X="é")  # but (?i) folds Unicode
    assert _hit(_rule("$a: X ~= 'a(?i)b|c'"), X="C")
    with pytest.raises(RegexError):
        _rule("$a: X ~= '(?=a)'")
    with pytest.raises(RegexError):
        _rule("$a: X ~= '(a)\\1'")


def test_compile_go_rejects_what_re2_rejects() -> None:
    for bad in ("(?<=a)b", "(?!a)", "\\pL", "[[:nope:]]", "(a", "a)", "a*+", "a?+"):
        with pytest.raises(RegexError):
            compile_go(bad)
    assert compile_go("[[:digit:]]+").fullmatch("123")
    assert compile_go("\\x{41}").fullmatch("A")
    assert compile_go("a{,2}").fullmatch("a{,2}")  # literal in RE2, a repetition in Python
    assert compile_go("a+?b").fullmatch("aab")


def test_container_match_is_case_insensitive_and_rule_disabled_without_container() -> None:
    match = "$md5: extract('MD5=(?P<md5>[A-F0-9]{32})', Hashes) in blacklist'"
    hashes = "SHA1=00,MD5=83514D9EE3C3E8B5B2A6A5E3B1B1B1B1"
    assert _rule(match).rules[0].disabled
    assert not _hit(_rule(match), Hashes=hashes)
    engine = _rule(match, containers={"blacklist": ["83514d9ee3c3e8b5b2a6a5e3b1b1b1b1"]})
    assert _hit(engine, Hashes=hashes)
    assert not _hit(engine, Hashes="MD5=FFFF")
    engine.add_container("blacklist", ["FFFF"])  # existing container: membership only
    assert not _hit(engine, Hashes="MD5=FFFF")


def test_add_container_enables_disabled_rules() -> None:
    engine = _rule("$d: extract('(?P<d>.+)', Q) in misp")
    assert engine.rules[0].disabled
    engine.add_container("misp", ["Evil.COM"])
    assert engine.rules[0].disabled is None
    assert _hit(engine, Q="evil.com")


def test_upstream_parse_atom_rule_cases() -> None:
    """gene engine/parser_test.go TestParseAtomRule, as described in docs/reference/gene.md §14."""
    assert parse_match("$hello: \"Hashes = Test\" = 'x'", BASE).path == (*BASE, "Hashes = Test")
    assert parse_match("$r: Event/EventData/Hashes = 'x'", BASE).path == (
        *BASE,
        "Event",
        "EventData",
        "Hashes",
    )  # relative, although it looks absolute
    assert parse_match("$s: \"With space\" = 'x'", BASE).path == (*BASE, "With space")
    abs_ind = parse_match("$i: /Event/System/Computer = @/Event/System/Computer", BASE)
    assert isinstance(abs_ind, IndirectMatch)
    assert abs_ind.other == ("Event", "System", "Computer")
    with pytest.raises(MatchSyntaxError):
        parse_match("$a: Hashes Test = 'x'", BASE)
    with pytest.raises(MatchSyntaxError):  # container form needs a space after the colon
        parse_match("$c:extract('(?P<x>.)', X) in bl", BASE, frozenset({"bl"}))


def test_unanchored_recognisers_ignore_surrounding_text() -> None:
    m = parse_match("junk $a: Image = 'x' trailing", BASE)
    assert isinstance(m, FieldMatch) and m.name == "$a" and m.value == "x"
    cm = parse_match(
        "$c: extract('(?P<x>.+)', X) in blacklist' and more", BASE, frozenset({"blacklist"})
    )
    assert isinstance(cm, ContainerMatch) and cm.container == "blacklist"
