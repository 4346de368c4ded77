"""The literals the block indexes are necessary: the index never skips a rule that matches.

rules/sigma/block.py: `regex_literals` (sets of strings from regexes), `necessary` (two groups
for an OR of ANDs) and the selectivity model that picks the groups.
"""

from __future__ import annotations

import json
import re
from typing import Any
from unittest.mock import patch

from hypothesis import assume, given, settings
from hypothesis import strategies as st

import rules
from rules.sigma import block
from rules.sigma.block import regex_literals, rule_literals

from .conftest import sysmon_event

FIELDS = ("Image", "CommandLine", "User")
FOLDS = {"s": "\u017f", "i": "\u0131", "I": "\u0130", "k": "\u212a", "K": "\u212a"}

# regex pieces: literal runs, small classes, groups and alternations, fixed repeats, anchors,
# case-folding scopes, and what ends a run (\s . open repeats)
_PIECES = [
    "ab", "Sk", "i", "x", "\\.", "[ \"']", "[a-c]", "[0-9]", "[A-F]", "(ab|cd)", "(?:x|yz)",
    "{2}", "\\s", ".*", "\\b", "^", "$", "(?i)", "(?i:", ")", "+", "?", "é", "[^a]",
]  # fmt: skip
patterns = st.lists(st.sampled_from(_PIECES), min_size=1, max_size=7).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.data(), patterns, st.booleans())
def test_regex_literal_sets_are_in_every_match(data: Any, pattern: str, icase: bool) -> None:
    """Every text a regex finds a match in holds one of its literals, once lower-cased,
    also with the letters case folding maps onto ASCII ones (ſ ı İ K)."""
    flags = re.IGNORECASE if icase else 0
    try:
        rx = re.compile(pattern, flags)
    except re.error:
        assume(False)
        return
    lits = regex_literals(pattern, icase)
    assume(lits is not None)
    assert lits and all(lit == lit.lower() for lit in lits)
    text = data.draw(st.from_regex(rx))
    folded = "".join(FOLDS.get(c, c) if data.draw(st.booleans()) else c for c in text)
    for t in (text, folded, text.upper()):
        if rx.search(t):
            assert any(lit in t.lower() for lit in lits), (pattern, t, lits)


def test_regex_literal_sets() -> None:
    # Raspberry Robin's `\.[ "']` beats a lone backslash; `user` beats `net`
    assert regex_literals(r"""\\[a-zA-Z0-9]{1,32}\.[a-zA-Z0-9]{1,6}\.[ "']{1}""") == [
        ". ",
        '."',
        ".'",
    ]
    assert regex_literals(r"net\s+user\s+") == ["user"]
    assert regex_literals(r"(ab|cd)ef") == ["abef", "cdef"]
    assert regex_literals(r"\s[a-fA-F0-9]{64}\s[a-fA-F0-9]{16}") is None
    assert regex_literals(r"(?i)invoke-posh") == ["nvoke-po"]  # not i/s under IGNORECASE


def _rule(title: str, detection: dict[str, Any], condition: str) -> str:
    return (
        f"title: {title}\nid: 11111111-2222-3333-4444-{abs(hash(title)) % 10**12:012d}\n"
        f"status: test\nlogsource: {{product: windows, category: process_creation}}\n"
        f"detection: {json.dumps({**detection, 'condition': condition})}\nlevel: high\n"
    )


def _event(fields: dict[str, str]) -> dict[str, Any]:
    return sysmon_event(fields)


def _lits(text: str) -> list[list[tuple[str, str, str]]]:
    (rule,) = rules.loads(text)
    return rule_literals(rule.trees)  # type: ignore[attr-defined]


def test_selectivity_prefers_rare_literals_over_common_fragments() -> None:
    """OilRig's `Image|contains: '\\Windows\\Temp\\DB\\'` is indexed, not `endswith: '.exe'`."""
    text = _rule(
        "oilrig",
        {"sel": {"Image|contains": "\\Windows\\Temp\\DB\\", "Image|endswith": ".exe"}},
        "sel",
    )
    assert _lits(text)[0] == [("Image", "sub", "windows\\temp\\db\\")]  # (clipped to 16)
    # `User|contains: AUTHORI` (NT AUTHORITY) is in most values: the image list goes first
    text = _rule(
        "system",
        {
            "sel": {"User|contains": "AUTHORI", "Image|endswith": ["\\calc.exe", "\\hh.exe"]},
        },
        "sel",
    )
    assert _lits(text)[0] == [("Image", "suf", "\\calc.exe"), ("Image", "suf", "\\hh.exe")]


def test_long_literals_are_clipped_to_their_end() -> None:
    text = _rule(
        "long",
        {
            "sel": {
                "Image|startswith": "C:\\Windows\\System32\\Tasks\\",
                "CommandLine": "c:\\program files\\some vendor\\tool.exe",
            }
        },
        "sel",
    )
    # 16 characters at most: a prefix's end is a substring, an equality's end a suffix
    assert _lits(text) == [
        [("CommandLine", "suf", " vendor\\tool.exe")],
        [("Image", "sub", "\\system32\\tasks\\")],
    ]
    engine = rules.Engine(rules.loads(text), timing=False)
    fields = {"Image": "C:\\Windows\\System32\\Tasks\\x.exe"}
    for cmd, fires in [
        ("C:\\Program Files\\Some Vendor\\Tool.exe", True),
        ("x vendor\\tool.exe", False),
    ]:
        det = engine.evaluate(_event({**fields, "CommandLine": cmd}))
        assert bool(det and det.signatures) is fires


def test_an_or_of_ands_indexes_two_groups() -> None:
    text = _rule(
        "two",
        {
            "sel_a": {"Image|endswith": "\\aaa.exe", "CommandLine|contains": "bbbbbb"},
            "sel_b": {"Image|endswith": "\\ccc.exe", "CommandLine|contains": "dddddd"},
        },
        "1 of sel_*",
    )
    groups = _lits(text)
    assert len(groups) == 2
    assert {lit for g in groups for _, _, lit in g} == {
        "\\aaa.exe",
        "bbbbbb",
        "\\ccc.exe",
        "dddddd",
    }
    engine = rules.Engine(rules.loads(text), timing=False)
    for fields, fires in [
        ({"Image": "C:\\aaa.exe", "CommandLine": "x bbbbbb"}, True),
        ({"Image": "C:\\ccc.exe", "CommandLine": "x dddddd"}, True),
        ({"Image": "C:\\aaa.exe", "CommandLine": "x dddddd"}, False),
        ({"Image": "C:\\ccc.exe", "CommandLine": "x bbbbbb"}, False),
    ]:
        det = engine.evaluate(_event(fields))
        assert bool(det and det.signatures) is fires, fields


# --- the index against each rule alone, on generated rules and events --------------------
_ATOMS = ["ab", "b.", "\\a", "a b", "x", ".exe", "\\windows\\"]
_MODS = ["", "|contains", "|startswith", "|endswith", "|contains|all", "|re", "|cased"]
_REGEXES = ["a.*b", "ab|x", "[ab]\\.", "\\\\a", "(?i)ab", "a\\s+b", "^x", "b\\.[ x]", ".+"]
_CONDITIONS = [
    "sel_a",
    "sel_a and sel_b",
    "1 of sel_*",
    "all of sel_*",
    "sel_a and not sel_b",
    "(sel_a or sel_b) and sel_c",
    "1 of sel_* and not sel_c",
]


@st.composite
def _selection(draw: Any) -> Any:
    out: dict[str, Any] = {}
    for field in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=2, unique=True)):
        mod = draw(st.sampled_from(_MODS))
        pool = _REGEXES if mod == "|re" else _ATOMS
        values = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3))
        out[field + mod] = values if len(values) > 1 else values[0]
    if draw(st.booleans()):
        return out
    return [out, draw(_selection())]  # a list of maps: OR


_value = st.lists(st.sampled_from([*_ATOMS, "A", "B", "X", " ", "\\", "."]), max_size=4).map(
    "".join
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.fixed_dictionaries(
                {"sel_a": _selection(), "sel_b": _selection(), "sel_c": _selection()}
            ),
            st.sampled_from(_CONDITIONS),
        ),
        min_size=1,
        max_size=4,
    ),
    st.lists(st.dictionaries(st.sampled_from(FIELDS), _value, min_size=1), min_size=1, max_size=6),
)
def test_index_never_skips_a_rule_that_matches(
    specs: list[tuple[dict[str, Any], str]], events: list[dict[str, str]]
) -> None:
    text = "---\n".join(_rule(f"r{i}", d, c) for i, (d, c) in enumerate(specs))
    for clip in (block.KEY_CHARS, 2):  # 2: every literal longer than 2 is clipped (`_clip`)
        with patch.object(block, "KEY_CHARS", clip):
            engine = rules.Engine(rules.loads(text), timing=False)
            for fields in events:
                event = _event(fields)
                det = engine.evaluate(event)
                fast = set(det.signatures) if det else set()
                slow = {c.name for c in engine.rules if c.fn is not None and c.fn(event, {})}
                assert fast == slow, (clip, fields, text)
