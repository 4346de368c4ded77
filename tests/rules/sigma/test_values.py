"""Fast value tests (rules/sigma/values.py) equal their straightforward definitions."""

from __future__ import annotations

import ipaddress
import re

from hypothesis import example, given, settings
from hypothesis import strategies as st
from sigma.types import SigmaCIDRExpression, SigmaNumber, SpecialChars

from rules.sigma.values import cidr_test, literal_regex_test, number_test, string_test

STAR, ONE = SpecialChars.WILDCARD_MULTI, SpecialChars.WILDCARD_SINGLE
MANY = settings(max_examples=400, deadline=None)

_SEGMENTS = st.sampled_from(["\\+", "{", "\\{", "^", "\\^", "`", "ab", "B", "\\n", "x\\.y"])
_GAPS = st.sampled_from([".*", ".*?"])
_FLAGS = st.sampled_from([0, re.IGNORECASE, re.DOTALL, re.MULTILINE, re.IGNORECASE | re.DOTALL])


@st.composite
def _gapped(draw: st.DrawFn) -> str:
    """`lit(.*lit)*` patterns, with optional leading/trailing `.*` and inline flags."""
    segs = draw(st.lists(_SEGMENTS, min_size=1, max_size=6))
    body = "".join(s + draw(_GAPS) for s in segs[:-1]) + segs[-1]
    lead = draw(st.sampled_from(["", ".*", "(?s)", "(?i)"]))
    return lead + body + draw(st.sampled_from(["", ".*"]))


@MANY
@given(_gapped(), st.text(alphabet="+{^`abAB\nx.y ", max_size=40), _FLAGS)
def test_literal_regexes_search_like_re(pattern: str, text: str, flags: int) -> None:
    """`\\+.*\\+...` (PowerShell obfuscation) without backtracking, `.` stopping at newlines."""
    fast = literal_regex_test(pattern, flags)
    want = re.search(pattern, text, flags) is not None
    if fast is not None:
        assert fast(text) is want, (pattern, text, flags)


def test_literal_regexes_cover_the_obfuscation_rule() -> None:
    plus = r"\+.*\+.*\+.*\+.*\+.*\+.*\+.*\+.*\+.*\+.*\+.*\+.*\+.*\+"
    fast = literal_regex_test(plus, 0)
    assert fast is not None
    assert fast("+" * 14) and not fast("+" * 13) and not fast("+" * 7 + "\n" + "+" * 7)
    assert literal_regex_test(plus, re.DOTALL)("+" * 7 + "\n" + "+" * 7)  # type: ignore[misc]
    # letters under IGNORECASE and anything beyond literals keep the regex
    assert literal_regex_test("a.*b", re.IGNORECASE) is None
    assert literal_regex_test(r"a\s+b", 0) is None
    assert literal_regex_test(r"a.+b", 0) is None


_PARTS = st.lists(st.sampled_from(["a", "b", "ab", "ba", STAR, STAR, ONE]), min_size=1, max_size=7)


@MANY
@given(_PARTS, st.text(alphabet="abAB", max_size=10) | st.text(alphabet="ab", max_size=5))
@example(["ab", STAR, "ba"], "aba")  # prefix and suffix may not overlap
def test_wildcards_match_like_a_full_regex(parts: list[str | SpecialChars], text: str) -> None:
    """`* -e* JAB*`-style patterns: leftmost finds instead of a backtracking `.*` regex."""
    rx = "".join(".*" if p is STAR else "." if p is ONE else re.escape(str(p)) for p in parts)
    want = re.fullmatch(rx, text.lower(), re.DOTALL) is not None
    assert string_test(parts, False)(text.lower()) is want, (parts, text)
    cased = re.fullmatch(rx, text, re.DOTALL) is not None
    assert string_test(parts, True)(text) is cased, (parts, text)


_NETS = ["10.0.0.0/8", "192.168.0.0/16", "::1/128", "fe80::/10", "172.16.0.0/12"]
_ADDRS = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(["-", "", " 10.1.2.3 ", "[::1]", "fe80::1%eth0", "x"]),
)


@MANY
@given(st.lists(st.sampled_from(_NETS), min_size=1, max_size=5, unique=True), _ADDRS)
def test_cidr_lists_parse_once(nets: list[str], addr: str) -> None:
    test = cidr_test([SigmaCIDRExpression(n) for n in nets])
    try:
        ip = ipaddress.ip_address(addr.strip().strip("[]"))
    except ValueError:
        want = False
    else:
        want = any(ip in ipaddress.ip_network(n) for n in nets)
    assert test(addr) is want and test(addr) is want  # the second answer comes from the memo


@MANY
@given(
    st.lists(st.integers(0, 70000), min_size=1, max_size=10),
    st.one_of(st.integers(-5, 70000).map(str), st.sampled_from(["0x1bb", " 443 ", "443.0", "x"])),
)
def test_number_lists_parse_once(numbers: list[int], text: str) -> None:
    s = text.strip()
    try:
        value = float(int(s, 0) if s[:2].lower() == "0x" else s)
    except ValueError:
        value = None
    want = text in {str(n) for n in numbers} or value in numbers
    assert number_test([SigmaNumber(n) for n in numbers])(text) is want


def test_numbers_beyond_a_float_do_not_raise() -> None:
    """`0x` + 400 hex digits used to raise OverflowError out of the rule (the scan stopped)."""
    assert number_test([SigmaNumber(888)])("0x" + "f" * 400) is False
