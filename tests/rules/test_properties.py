"""Property tests (hypothesis) for conditions, matchers and Go parsing; fuzzing of parsers.

Kept small (`max_examples`) so the whole file runs in a few seconds.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rules
from rules.condition import evaluate, parse_condition, to_tree, tree_source
from rules.errors import ConditionError, RegexError, RuleError, RuleRuntimeError
from rules.event import go_string
from rules.evtx import EvtxStats, read_evtx
from rules.goparse import parse_float, parse_int
from rules.goregex import compile_go, required_literal
from tests.support.events import gene_event

from .conftest import GENE_RULES

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = ["$a", "$b", "$c", "$d", "$e"]

# --- conditions ---------------------------------------------------------------------------
leaf = st.sampled_from(NAMES).map(lambda n: ("var", n))
trees = st.recursive(
    leaf,
    lambda kids: st.one_of(
        kids.map(lambda k: ("not", k)),
        st.tuples(st.sampled_from(["and", "or"]), kids, kids).map(lambda t: (t[0], t[1], t[2])),
    ),
    max_leaves=8,
)


def _starts_with_not(node: tuple) -> bool:
    if node[0] == "not":
        return True
    return node[0] in ("and", "or") and _starts_with_not(node[1])


def _no_double_negation(node: tuple) -> bool:
    """GENE quirk excluded: `!` directly followed by `!` (also `!(!...`), docs/reference/gene.md
    §5.3."""
    if node[0] == "var":
        return True
    if node[0] == "not":
        return not _starts_with_not(node[1]) and _no_double_negation(node[1])
    return _no_double_negation(node[1]) and _no_double_negation(node[2])


def _render(node: tuple, spelling: dict[str, str]) -> str:
    """Fully parenthesised condition text for a tree (the way gene-rules writes them)."""
    if node[0] == "var":
        return node[1]
    if node[0] == "not":
        inner = node[1]
        return (
            f"!{_render(inner, spelling)}"
            if inner[0] == "var"
            else f"!({_render(inner, spelling)})"
        )
    return f"({_render(node[1], spelling)} {spelling[node[0]]} {_render(node[2], spelling)})"


def _truth(node: tuple, env: dict[str, bool]) -> bool:
    if node[0] == "var":
        return env[node[1]]
    if node[0] == "not":
        return not _truth(node[1], env)
    if node[0] == "and":
        return _truth(node[1], env) and _truth(node[2], env)
    return _truth(node[1], env) or _truth(node[2], env)


@FAST
@given(
    trees.filter(_no_double_negation),
    st.sampled_from(
        [{"and": "and", "or": "or"}, {"and": "&&", "or": "||"}, {"and": "AND", "or": "OR"}]
    ),
)
def test_parenthesised_conditions_mean_standard_boolean_logic(tree: tuple, spelling: dict) -> None:
    cond = parse_condition(_render(tree, spelling))
    compiled = to_tree(cond)
    for bits in itertools.product((False, True), repeat=len(NAMES)):
        env = dict(zip(NAMES, bits, strict=True))
        expected = _truth(tree, env)
        assert evaluate(cond.elements, env.__getitem__) == expected
        if compiled is not None:
            src = tree_source(compiled, {k: repr(v) for k, v in env.items()})
            assert eval(src) == expected


tokens = st.lists(
    st.sampled_from(NAMES + ["and", "or", "!", "(", ")", "&&", "||", " ", "  "]), max_size=12
)


@FAST
@given(tokens)
def test_any_token_soup_parses_or_fails_cleanly(parts: list[str]) -> None:
    text = " ".join(parts)
    try:
        cond = parse_condition(text, dict.fromkeys(NAMES))
    except ConditionError:
        return
    tree = to_tree(cond) if cond.elements else None
    for bits in itertools.product((False, True), repeat=3):
        env = dict(zip(NAMES, bits + (False, False), strict=True))
        try:
            value = evaluate(cond.elements, env.__getitem__)
        except RuleRuntimeError:
            assert tree is None  # a condition that can panic is never compiled to a tree
            continue
        assert isinstance(value, bool)
        if tree is not None:
            assert eval(tree_source(tree, {k: repr(v) for k, v in env.items()})) == value


# --- matchers and Go parsing ------------------------------------------------------------------
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


def _engine(match: str) -> rules.Engine:
    rule = {
        "Name": "P",
        "Meta": {"Events": {"Security": []}, "Schema": "2.0.0"},
        "Matches": [match],
        "Condition": "$m",
    }
    return rules.Engine(rules.loads(json.dumps(rule)))


def _ev(value: Any) -> dict[str, Any]:
    return gene_event("1", {"F": value}, channel="Security", time="2024-01-01T00:00:00Z")


@FAST
@given(st.text(alphabet="ab.*$\\x/é\n", max_size=8), st.text(alphabet="ab.*$\\x/é\n", max_size=8))
def test_equality_matcher_is_exact_string_equality(value: str, other: str) -> None:
    if "'" in value or "\n" in value or value != value.strip("\"'") or not value:
        return
    engine = _engine(f"$m: F = '{value}'")
    assert (engine.evaluate(_ev(other)) is not None) == (other == value)
    assert engine.evaluate(_ev(value)) is not None


@FAST
@given(st.text(alphabet="abAB.", min_size=1, max_size=5), texts)
def test_regex_matcher_is_unanchored_search(needle: str, hay: str) -> None:
    engine = _engine(f"$m: F ~= '{re.escape(needle)}'")
    assert (engine.evaluate(_ev(hay)) is not None) == (needle in hay)


# Go patterns from pieces that make literal runs, case-folded scopes, optional parts and
# alternations; texts with the non-ASCII letters Unicode folds onto ASCII ones (ſ→s, K→k, İ→i).
go_pieces = st.lists(
    st.sampled_from(
        ["ab", "Sk", "i", "(?i)", "(?i:", "(?-i:", ")", "(", "|", "?", "+", "*", ".", "\\.", "x"]
    ),
    max_size=8,
).map("".join)
fold_texts = st.text(alphabet="abskiABSKI.x\u017f\u212a\u0130é", max_size=10)


@FAST
@given(go_pieces, fold_texts)
def test_regex_literal_prefilter_never_changes_a_match(pattern: str, hay: str) -> None:
    """The compiled `~=` skips the regex when its required literal is absent (matchers.py)."""
    try:
        reference = compile_go(f"({pattern})")
    except RegexError:
        return
    engine = _engine(f"$m: F ~= '{pattern}'")
    assert (engine.evaluate(_ev(hay)) is not None) == (reference.search(hay) is not None)


@pytest.mark.parametrize(
    "pattern,literal",
    [
        ("(?i:C:\\\\Windows\\\\Sys(tem32|wow64)\\\\net1?\\.exe)", ("c:\\windows\\sys", True)),
        ("(user.*/ADD)", ("user", False)),
        ("((?i)ab(?-i:CDE))", ("CDE", False)),
        ("(x(abc)+y)", ("abc", False)),
        ("(x(abcd)?y|zz)", None),
        ("((?i)a\u017fb)", None),
        ("(.{512,})", None),
    ],
)
def test_required_literal(pattern: str, literal: tuple[str, bool] | None) -> None:
    assert required_literal(compile_go(pattern)) == literal


@FAST
@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_parse_int_round_trips(n: int) -> None:
    assert parse_int(str(n)) == n
    assert parse_int(("-" if n < 0 else "") + hex(abs(n))) == n
    assert parse_float(str(n)) == float(n)


@FAST
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_parse_float_and_go_format_round_trip(f: float) -> None:
    text = go_string(f)
    assert float(text) == f or (f == 0 and float(text) == 0)
    assert parse_float(repr(f)) == f
    mantissa = text.lstrip("-").split("e")[0]
    exponent = int(text.split("e")[1]) if "e" in text else None
    if exponent is not None:  # Go %v: scientific iff exponent < -4 or >= 6
        assert exponent < -4 or exponent >= 6
        assert re.fullmatch(r"[0-9](\.[0-9]+)?", mantissa)
    elif f != 0:
        assert -4 <= math.floor(math.log10(abs(f))) < 6 or "." in text


@FAST
@given(st.text(alphabet="ab()[]{}|*+?\\$^.:wdsbBPQE<>=!-019,", max_size=12))
def test_regex_translation_never_crashes(pattern: str) -> None:
    try:
        compiled = compile_go(pattern)
    except RegexError:
        return
    assert isinstance(compiled, re.Pattern)


# --- fuzzing the rule parser ------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 20) | st.text(max_size=6),
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "Name",
                    "Meta",
                    "Matches",
                    "Condition",
                    "Events",
                    "Schema",
                    "Criticality",
                    "Tags",
                    "Actions",
                    "x",
                ]
            ),
            kids,
            max_size=4,
        )
    ),
    max_leaves=10,
)


@FAST
@given(json_values)
def test_rule_parser_fuzz_gives_rule_errors_only(value: Any) -> None:
    try:
        ruleset = rules.loads(json.dumps(value))
        rules.Engine(ruleset)
    except RuleError:
        pass


@pytest.mark.shared_data("corpus")
@FAST
@given(st.integers(0, 400), st.binary(max_size=4))
def test_corrupted_rule_text_gives_rule_errors_only(cut: int, junk: bytes) -> None:
    text = (GENE_RULES / "compiled.gen").read_text()[:3000]
    broken = text[:cut] + junk.decode("latin-1") + text[cut + len(junk) :]
    try:
        rules.Engine(rules.loads(broken))
    except RuleError as ex:
        assert ex.reason


# --- fuzzing the EVTX reader ------------------------------------------------------------------
SMALL_EVTX = (
    GENE_RULES.parent
    / "EVTX-ATTACK-SAMPLES"
    / "Privilege_Escalation"
    / "win10_4703_SeDebugPrivilege_enabled.evtx"
)


@pytest.fixture(scope="module")
def evtx_bytes() -> bytes:
    if not SMALL_EVTX.exists():
        pytest.skip("corpus not present")
    return SMALL_EVTX.read_bytes()


def _read(data: bytes, tmp: Path) -> tuple[list[dict], EvtxStats]:
    path = tmp / "f.evtx"
    path.write_bytes(data)
    stats = EvtxStats()
    return list(read_evtx(path, stats)), stats


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_truncated_or_bit_flipped_evtx_never_crashes(
    evtx_bytes: bytes, tmp_path: Path, data: st.DataObject
) -> None:
    raw = bytearray(evtx_bytes)
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw)), label="length")]
    flips = data.draw(
        st.lists(st.tuples(st.integers(0, max(0, len(raw) - 1)), st.integers(0, 7)), max_size=40),
        label="flips",
    )
    for pos, bit in flips:
        if raw:
            raw[pos] ^= 1 << bit
    events, stats = _read(bytes(raw), tmp_path)
    assert stats.records == len(events)
    for event in events:
        assert isinstance(event, dict) and "Event" in event
        assert isinstance(rules.Event(event).event_id, int)  # accessors never raise


def test_evtx_damage_is_counted_not_raised(evtx_bytes: bytes, tmp_path: Path) -> None:
    good, stats = _read(evtx_bytes, tmp_path)
    assert stats.errors == 0 and len(good) == stats.records > 0
    half, stats = _read(evtx_bytes[: 4096 + 20000], tmp_path)
    assert len(half) < len(good)
    nothing, stats = _read(b"not an evtx file at all", tmp_path)
    assert nothing == [] and stats.errors == 1
    # smash one record's BinXML: that record may be lost, the rest survives
    raw = bytearray(evtx_bytes)
    first = raw.find(b"\x2a\x2a\x00\x00", 4096 + 512)
    size = struct.unpack_from("<I", raw, first + 4)[0]
    raw[first + 30 : first + size - 8] = b"\xff" * (size - 38)
    damaged, stats = _read(bytes(raw), tmp_path)
    assert len(damaged) >= len(good) - 1


# --- fuzzing the engine with odd events -------------------------------------------------------
odd = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = ["Image", "CommandLine", "ParentImage", "Hashes", "TargetFilename", "GrantedAccess"]


@pytest.fixture(scope="module")
def gene_engine() -> rules.Engine:
    if not GENE_RULES.exists():
        pytest.skip("gene-rules not present")
    return rules.Engine(
        rules.load(GENE_RULES / "compiled.gen"),
        containers={"blacklist": ["x"], "whitelist": ["y"], "misp": ["z"]},
    )


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    eid=st.one_of(st.sampled_from(["1", "7", "10", "4624"]), odd),
    channel=st.one_of(st.just("Microsoft-Windows-Sysmon/Operational"), odd),
    data=st.one_of(st.dictionaries(st.sampled_from(FIELDS), odd, max_size=6), odd),
    computer=odd,
)
def test_engine_never_raises_on_odd_events(
    gene_engine: rules.Engine, eid: Any, channel: Any, data: Any, computer: Any
) -> None:
    event = {
        "Event": {
            "System": {
                "Channel": channel,
                "EventID": eid,
                "Computer": computer,
                "TimeCreated": {"SystemTime": "x"},
            },
            "EventData": data,
        }
    }
    det = gene_engine.match(event)
    assert det is None or isinstance(det, rules.Detection)
    assert rules.Event(event).event_id >= -(2**31)
