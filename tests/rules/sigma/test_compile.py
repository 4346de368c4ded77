"""Generated rule expressions (rules/sigma/compile.py) against straightforward references."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import rules
from rules.sigma.compile import _AUTOMATON, _CHAIN

from .conftest import sysmon_event

MANY = settings(max_examples=100, deadline=None)


def _engine(detection: dict[str, Any]) -> rules.Engine:
    text = (
        "title: t\nid: 11111111-2222-3333-4444-555555555555\nstatus: test\n"
        "logsource: {product: windows, category: process_creation}\n"
        f"detection: {json.dumps({**detection, 'condition': 'sel'})}\nlevel: high\n"
    )
    return rules.Engine(rules.loads(text), timing=False)


def _fires(engine: rules.Engine, fields: dict[str, Any]) -> bool:
    event = sysmon_event(fields)
    det = engine.evaluate(event)
    fast = bool(det and det.signatures)
    alone = any(c.fn(event, {}) for c in engine.rules if c.fn is not None)
    assert fast is alone
    return fast


_WORD = st.text(alphabet="abAB -:.", min_size=1, max_size=4)


@MANY
@given(st.lists(_WORD, min_size=1, max_size=3 * _CHAIN), st.text(alphabet="abAB -:.", max_size=30))
def test_substring_lists_of_any_length(subs: list[str], value: str) -> None:
    """A few substrings: `in` each; many: one Aho-Corasick pass (was one regex alternation)."""
    engine = _engine({"sel": {"CommandLine|contains": subs}})
    want = any(s.lower() in value.lower() for s in subs)
    assert _fires(engine, {"CommandLine": value}) is want


def test_thousands_of_substrings() -> None:
    """IOC lists (hundreds to thousands of values) stay one regex alternation: compact."""
    subs = [f"md5={i:032x}" for i in range(3 * _AUTOMATON)]
    engine = _engine({"sel": {"Hashes|contains": subs}})
    assert _fires(engine, {"Hashes": f"SHA1=AB,MD5={7:032X}"})
    assert not _fires(engine, {"Hashes": f"MD5={7:031X}"})


@MANY
@given(
    st.lists(st.text(alphabet="ab*?", min_size=1, max_size=6), min_size=1, max_size=3), st.data()
)
def test_wildcard_values_behind_their_longest_part(patterns: list[str], data: Any) -> None:
    """`contains: ' -e* JAB'`: `' jab' in v and <wildcard test>` (the part a match holds)."""
    engine = _engine({"sel": {"CommandLine": patterns}})
    rxs = ["".join(".*" if c == "*" else "." if c == "?" else c for c in p) for p in patterns]
    # values: one pattern filled in (wildcards replaced), or anything
    fill = st.text(alphabet="abAB", max_size=3)
    chosen = data.draw(st.sampled_from(patterns))
    made = "".join(
        data.draw(fill) if c == "*" else data.draw(st.sampled_from("aB")) if c == "?" else c
        for c in chosen
    )
    for value in (made, data.draw(st.text(alphabet="abAB", max_size=8))):
        want = any(re.fullmatch(rx, value.lower(), re.DOTALL) for rx in rxs)
        assert _fires(engine, {"CommandLine": value}) is want, (patterns, value)


def test_fieldref_modifiers() -> None:
    cases = {
        "": [("C:\\A.exe", "c:\\a.exe", True), ("C:\\A.exe", "c:\\b.exe", False)],
        "|startswith": [("C:\\Dir\\x.exe", "c:\\dir", True), ("C:\\x", "c:\\dir", False)],
        "|endswith": [("C:\\Dir\\x.exe", "X.EXE", True), ("C:\\x", "y", False)],
        "|contains": [("C:\\Dir\\x.exe", "dir\\", True), ("C:\\x", "dir", False)],
    }
    for mod, rows in cases.items():
        engine = _engine({"sel": {f"Image|fieldref{mod}": "ParentImage"}})
        for image, parent, want in rows:
            assert _fires(engine, {"Image": image, "ParentImage": parent}) is want, (mod, image)
        assert not _fires(engine, {"Image": "x"})  # the referenced field is missing
        assert not _fires(engine, {"ParentImage": "x"})


def test_regex_and_cidr_leaves_inline_with_tuples() -> None:
    """Unnamed `<Data>` elements make tuple values: each element is tested."""
    engine = _engine({"sel": {"CommandLine|re": "a.*b", "DestinationIp|cidr": "10.0.0.0/8"}})
    assert _fires(engine, {"CommandLine": "xaxb", "DestinationIp": "10.1.2.3"})
    assert _fires(engine, {"CommandLine": ["x", "a-b"], "DestinationIp": ["1.1.1.1", "10.0.0.1"]})
    assert not _fires(engine, {"CommandLine": ["a", "b"], "DestinationIp": "10.0.0.1"})
    assert not _fires(engine, {"CommandLine": "ab", "DestinationIp": "11.0.0.1"})
    ports = _engine({"sel": {"DestinationPort": [888, 4444, 51820], "Initiated": "true"}})
    assert _fires(ports, {"DestinationPort": "4444", "Initiated": "true"})
    assert _fires(ports, {"DestinationPort": " 0x378 ", "Initiated": "true"})  # 888
    assert not _fires(ports, {"DestinationPort": "443", "Initiated": "true"})
