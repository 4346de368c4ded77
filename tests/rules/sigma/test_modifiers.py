"""Property tests: Sigma modifiers as compiled by Heron vs a straightforward reference."""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import rules

from .conftest import sysmon_event

TEXT = st.text(alphabet="aAbBzZ-/ .:=é", max_size=12)
PLAIN = st.text(alphabet="aAbBzZ-/ .:=é", min_size=1, max_size=5)
EXAMPLES = settings(max_examples=60, deadline=None)


def _engine(field: str, modifiers: str, value: Any, *, extra: str = "") -> rules.Engine:
    key = field + (f"|{modifiers}" if modifiers else "")
    text = (
        f"title: prop\nid: 11111111-2222-3333-4444-555555555555\nstatus: test\n"
        f"logsource: {{product: windows, category: process_creation}}\n"
        f"detection:\n  sel:\n    {json.dumps(key)}: {json.dumps(value)}\n{extra}"
        f"  condition: sel\nlevel: high\n"
    )
    return rules.Engine(rules.loads(text))


def _fires(engine: rules.Engine, **fields: Any) -> bool:
    event = sysmon_event(fields)
    det = engine.evaluate(event)
    return bool(det and det.signatures)


@EXAMPLES
@given(PLAIN, TEXT, st.sampled_from(["", "contains", "startswith", "endswith"]), st.booleans())
def test_string_modifiers(pattern: str, value: str, mod: str, cased: bool) -> None:
    ref = {
        "": str.__eq__,
        "contains": lambda v, p: p in v,
        "startswith": str.startswith,
        "endswith": str.endswith,
    }[mod]
    mods = "|".join(m for m in (mod, "cased" if cased else "") if m)
    want = ref(value, pattern) if cased else ref(value.lower(), pattern.lower())
    assert _fires(_engine("CommandLine", mods, pattern), CommandLine=value) is want
    # the value itself always matches its own pattern
    assert _fires(_engine("CommandLine", mods, pattern), CommandLine=pattern)


@EXAMPLES
@given(st.lists(PLAIN, min_size=1, max_size=3), TEXT)
def test_contains_all(patterns: list[str], value: str) -> None:
    want = all(p.lower() in value.lower() for p in patterns)
    assert _fires(_engine("CommandLine", "contains|all", patterns), CommandLine=value) is want
    any_want = any(p.lower() in value.lower() for p in patterns)
    assert _fires(_engine("CommandLine", "contains", patterns), CommandLine=value) is any_want


@EXAMPLES
@given(st.text(alphabet="ab*?", min_size=1, max_size=6), st.text(alphabet="ab", max_size=6))
def test_wildcards(pattern: str, value: str) -> None:
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    want = re.fullmatch(rx, value, re.DOTALL | re.IGNORECASE) is not None
    assert _fires(_engine("CommandLine", "", pattern), CommandLine=value) is want


@EXAMPLES
@given(
    st.text(alphabet="aAbBzZ-/ .:=", min_size=1, max_size=5),
    st.binary(max_size=4),
    st.binary(max_size=4),
    st.sampled_from(["", "utf16", "utf16be", "wide"]),
)
def test_base64offset_finds_embedded_text(pattern: str, pre: bytes, post: bytes, enc: str) -> None:
    # pySigma's names: wide = UTF-16LE, utf16 = UTF-16LE with BOM, utf16be
    encoded = {
        "": pattern.encode(),
        "utf16": b"\xff\xfe" + pattern.encode("utf-16-le"),
        "utf16be": pattern.encode("utf-16-be"),
        "wide": pattern.encode("utf-16-le"),
    }[enc]
    blob = base64.b64encode(pre + encoded + post).decode()
    mods = "|".join(m for m in (enc, "base64offset", "contains") if m)
    assert _fires(_engine("CommandLine", mods, pattern), CommandLine=f"x {blob} y")


@EXAMPLES
@given(PLAIN, TEXT)
def test_base64(pattern: str, value: str) -> None:
    encoded = base64.b64encode(pattern.encode()).decode()
    engine = _engine("CommandLine", "base64|contains", pattern)
    assert _fires(engine, CommandLine=value + encoded)
    assert _fires(engine, CommandLine=value) is (encoded.lower() in value.lower())


@EXAMPLES
@given(
    st.sampled_from(["-", "/", "\u2013", "\u2014", "\u2015"]),
    st.text("abc", min_size=1, max_size=4),
)
def test_windash(dash: str, flag: str) -> None:
    engine = _engine("CommandLine", "windash|contains", f" -{flag}")
    assert _fires(engine, CommandLine=f"tool.exe {dash}{flag} x")


@EXAMPLES
@given(
    st.from_regex(r"[ab]{0,3}(x|y)?[ab]{0,3}", fullmatch=True),
    TEXT,
    st.sampled_from(["", "i", "m", "s"]),
)
def test_regex(pattern: str, value: str, flag: str) -> None:
    flags = {"": 0, "i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}[flag]
    mods = "re" + (f"|{flag}" if flag else "")
    want = re.search(pattern, value, flags) is not None
    assert _fires(_engine("CommandLine", mods, pattern), CommandLine=value) is want


@EXAMPLES
@given(st.integers(0, 2**32 - 1), st.integers(8, 32), st.integers(0, 2**32 - 1))
def test_cidr(net: int, prefix: int, addr: int) -> None:
    network = ipaddress.ip_network((net, prefix), strict=False)
    ip = ipaddress.ip_address(addr)
    engine = _engine("DestinationIp", "cidr", str(network))
    assert _fires(engine, DestinationIp=str(ip)) is (ip in network)
    assert not _fires(engine, DestinationIp="not-an-ip")


@EXAMPLES
@given(st.integers(-50, 50), st.integers(-50, 50), st.sampled_from(["gt", "gte", "lt", "lte"]))
def test_numeric_compare(limit: int, value: int, op: str) -> None:
    ref = {"gt": value > limit, "gte": value >= limit, "lt": value < limit, "lte": value <= limit}[
        op
    ]
    assert _fires(_engine("Count", op, limit), Count=str(value)) is ref


def test_exists_null_fieldref_keywords() -> None:
    exists = _engine("ParentImage", "exists", True)
    assert _fires(exists, ParentImage="x") and not _fires(exists, Image="x")
    missing = _engine("ParentImage", "exists", False)
    assert _fires(missing, Image="x") and not _fires(missing, ParentImage="")
    null = _engine("ParentImage", "", None)
    assert _fires(null, Image="x") and _fires(null, ParentImage="")
    assert not _fires(null, ParentImage="a")
    ref = _engine("Image", "fieldref", "ParentImage")
    assert _fires(ref, Image="C:\\A.exe", ParentImage="c:\\a.exe")
    assert not _fires(ref, Image="C:\\A.exe", ParentImage="c:\\b.exe")
    text = (
        "title: kw\nstatus: test\nlogsource: {product: windows, category: process_creation}\n"
        "detection:\n  keywords: ['Mimikatz', 'sekurlsa']\n  condition: keywords\n"
        "level: high\n"
    )
    kw = rules.Engine(rules.loads(text))
    assert _fires(kw, CommandLine="run MIMIKATZ now")
    assert not _fires(kw, CommandLine="benign")


def test_one_of_all_of_with_wildcards() -> None:
    text = (
        "title: sel\nstatus: test\nlogsource: {product: windows, category: process_creation}\n"
        "detection:\n  sel_a: {Image|endswith: '\\\\a.exe'}\n"
        "  sel_b: {CommandLine|contains: 'x'}\n  filter_1: {User: 'SYSTEM'}\n"
        "  condition: 1 of sel_* and not 1 of filter_*\nlevel: low\n"
    )
    one = rules.Engine(rules.loads(text))
    assert _fires(one, Image="C:\\a.exe", User="bob")
    assert _fires(one, CommandLine="-x", User="bob")
    assert not _fires(one, Image="C:\\a.exe", User="system")
    allof = rules.Engine(
        rules.loads(text.replace("1 of sel_*", "all of sel_*").replace("title: sel", "title: sel2"))
    )
    assert not _fires(allof, Image="C:\\a.exe", User="bob")
    assert _fires(allof, Image="C:\\a.exe", CommandLine="-x")


def test_expand_placeholders_from_file(tmp_path: Any) -> None:
    (tmp_path / "sigma-placeholders.yml").write_text("Admins: [alice, 'bob*']\n")
    (tmp_path / "r.yml").write_text(
        "title: ph\nstatus: test\nlogsource: {product: windows, category: process_creation}\n"
        "detection:\n  sel: {User|expand: '%Admins%'}\n  condition: sel\nlevel: low\n"
    )
    engine = rules.Engine(rules.load([tmp_path]))
    assert _fires(engine, User="ALICE") and _fires(engine, User="bobby")
    assert not _fires(engine, User="carol")
    other = tmp_path / "other"
    other.mkdir()
    (other / "r.yml").write_text((tmp_path / "r.yml").read_text())
    errors = rules.load([other / "r.yml"], collect_errors=True).errors
    assert len(errors) == 1 and "placeholder %Admins% has no values" in str(errors[0])
    listed = rules.load([other]).unsupported  # a directory lists it instead
    assert len(listed) == 1 and "placeholder %Admins%" in listed[0].reason
