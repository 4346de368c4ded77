"""Keyword anchors: a text holding any literal holds one of the anchors (never a skipped hit)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rules.sigma.anchors import MAX_ANCHORS, anchors, any_in

MIMIKATZ = [  # `Mimikatz Use` (SigmaHQ win_alert_mimikatz_keywords), lower-cased
    "dpapi::masterkey", "eo.oe.kiwi", "event::clear", "event::drop", "gentilkiwi.com",
    "kerberos::golden", "kerberos::ptc", "kerberos::ptt", "kerberos::tgt", "kiwi legit printer",
    "lsadump::", "mimidrv.sys", "\\mimilib.dll", "misc::printnightmare", "misc::shadowcopies",
    "misc::skeleton", "privilege::backup", "privilege::debug", "privilege::driver", "sekurlsa::",
]  # fmt: skip
_TEXT = st.text(alphabet="ab:k\\.x ", max_size=30)


def test_mimikatz_keywords_need_three_anchors() -> None:
    assert anchors(MIMIKATZ) == ("::", "kiwi", "mimi")


def test_no_anchors_for_empty_or_marker_literals_or_too_many() -> None:
    assert anchors([]) is None
    assert anchors(["abc", ""]) is None
    assert anchors(["a\x01b"]) is None
    spread = [chr(0x61 + i) * 2 for i in range(MAX_ANCHORS + 2)]  # nothing shared: one each
    assert anchors(spread) is None


@given(st.lists(st.text(alphabet="ab:k\\.x ", min_size=1, max_size=8), min_size=1, max_size=8))
def test_every_literal_holds_an_anchor(literals: list[str]) -> None:
    marks = anchors(literals)
    if marks is not None:
        assert all(any(m in lit for m in marks) for lit in literals)


@given(
    st.lists(st.text(alphabet="ab:k\\.x ", min_size=1, max_size=6), min_size=1, max_size=6),
    _TEXT,
    _TEXT,
)
def test_a_text_with_a_literal_passes_the_check(literals: list[str], pre: str, post: str) -> None:
    marks = anchors(literals)
    if marks is None:
        return
    check = any_in(marks)
    for lit in literals:
        assert check(pre + lit + post)


def test_any_in_quotes_its_anchors() -> None:
    check = any_in(("'", '"', "\\x", "a\nb"))
    assert check("it's") and check('"') and check("\\x") and check("za\nbz")
    assert not check("x") and not check("ab")
