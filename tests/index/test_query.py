"""The human query language: parsing, safety and error reporting (no index needed)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from index import IndexQueryError
from index.query import QueryTranslator, tokenize_text
from index.schema import build_schema

TRANSLATOR = QueryTranslator(build_schema())


@pytest.mark.parametrize(
    "query",
    [
        "Image:*powershell* AND EventID:1",
        "Image:C:\\Windows\\System32\\cmd.exe",
        'CommandLine:"net user \\"quoted\\" admin"',
        "C:\\Windows\\x.exe",
        "a b c",
        "(a OR b) AND NOT c",
        "+a -b !c",
        "a && b || c",
        "EventID:[1 TO 3] EventID:{1 TO *] EventID:>=4 EventID:<9",
        "ts:[2024-01-01T00:00:00Z TO 2024-01-02T00:00:00Z]",
        "ts:>2024-01-01",
        "Signature:Foo Criticality:>5 detection:true retro:false",
        "endpoint:5A92BAEB-9384 hostname:WS-1 Channel:Security Computer:DC01",
        "sha256:" + "A" * 64,
        "md5:" + "b" * 32,
        "Image:(cmd.exe OR powershell.exe)",
        "TargetUserName:admin*",
        "Unknown.Field_name:x",
        "*",
        "   ",
    ],
)
def test_valid_queries_translate(query: str) -> None:
    assert TRANSLATOR.translate(query) is not None


@pytest.mark.parametrize(
    ("query", "position"),
    [
        ("Image:", 0),
        ("(a", 0),
        ('"abc', 0),
        ("a AND", 2),
        ("AND a", 0),
        ("EventID:abc", 8),
        ("EventID:[1 TO", 8),
        ("Image:[a TO b]", 6),
        ("a )", 2),
        ("EventID:[1 TO 2 TO 3]", 8),
        ("detection:maybe", 10),
    ],
)
def test_malformed_queries_say_where(query: str, position: int) -> None:
    with pytest.raises(IndexQueryError) as info:
        TRANSLATOR.translate(query)
    assert info.value.position == position
    assert f"position {position}" in str(info.value)


def test_limits() -> None:
    with pytest.raises(IndexQueryError, match="longer"):
        TRANSLATOR.translate("a " * 5000)
    with pytest.raises(IndexQueryError, match="nested"):
        TRANSLATOR.translate("(" * 40 + "a" + ")" * 40)


def test_tokenizer_keeps_long_hashes() -> None:
    digest = "1a061c74619de6af8c02cba0fa00754bdd9e3515c0e08cad6350c7adfc8cdd5b"
    assert tokenize_text(f"SHA256={digest.upper()},MD5=X") == ["sha256", digest, "md5", "x"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_never_escapes_the_error_boundary(text: str) -> None:
    """Any input either translates or raises IndexQueryError (never a tantivy error)."""
    try:
        TRANSLATOR.translate(text)
    except IndexQueryError:
        pass
