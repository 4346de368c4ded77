"""Logsource mapping and the field view Sigma rules match against."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import rules
from rules.sigma import Unsupported, resolve
from rules.sigma.view import _text, build, lowered


def _ev(
    channel: str, eid: Any, data: dict[str, Any] | None = None, user: dict[str, Any] | None = None
) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "System": {
            "Channel": channel,
            "EventID": eid,
            "Provider": {"Name": "P"},
            "TimeCreated": {"SystemTime": "2024-01-01T00:00:00Z"},
        }
    }
    if data is not None:
        ev["EventData"] = data
    if user is not None:
        ev["UserData"] = user
    return {"Event": ev}


def _rule(logsource: str, detection: str, title: str = "t") -> rules.Engine:
    return rules.Engine(
        rules.loads(
            f"title: {title}\nstatus: test\nlevel: medium\n"
            f"logsource: {logsource}\ndetection:\n{detection}"
        )
    )


def _fires(engine: rules.Engine, event: dict[str, Any]) -> bool:
    det = engine.evaluate(event)
    return bool(det and det.signatures)


@pytest.mark.parametrize(
    "logsource,channel,ids",
    [
        (
            {"product": "windows", "category": "image_load"},
            "Microsoft-Windows-Sysmon/Operational",
            {7},
        ),
        (
            {"product": "windows", "category": "ps_script"},
            "Microsoft-Windows-PowerShell/Operational",
            {4104},
        ),
        ({"product": "windows", "category": "ps_classic_start"}, "Windows PowerShell", {400}),
        (
            {"product": "windows", "service": "windefend"},
            "Microsoft-Windows-Windows Defender/Operational",
            set(),
        ),
        (
            {"product": "windows", "service": "dns-client"},
            "Microsoft-Windows-DNS-Client/Operational",
            set(),
        ),
        ({"product": "linux", "category": "process_creation"}, "Linux-Sysmon/Operational", {1}),
    ],
)
def test_mapping(logsource: dict[str, str], channel: str, ids: set[int]) -> None:
    targets = {t.channel: t for t in resolve(logsource)}
    assert set(targets[channel].event_ids) == ids


@pytest.mark.parametrize(
    "logsource,reason",
    [
        ({"product": "linux", "service": "auditd"}, "logsource not collected: linux/auditd"),
        ({"product": "windows", "category": "file_access"}, "logsource not collected"),
        ({"category": "webserver"}, "logsource not collected: webserver"),
        ({"product": "windows", "service": "nope"}, "unknown logsource"),
    ],
)
def test_unsupported(logsource: dict[str, str], reason: str) -> None:
    with pytest.raises(Unsupported, match=reason):
        resolve(logsource)


def test_security_4688_is_read_as_process_creation() -> None:
    engine = _rule(
        "{product: windows, category: process_creation}",
        "  sel: {Image|endswith: '\\\\evil.exe', ParentProcessId: 632}\n  condition: sel\n",
    )
    sec = _ev("Security", "4688", {"NewProcessName": "C:\\evil.exe", "ProcessId": "0x278"})
    assert _fires(engine, sec)  # ParentProcessId ← ProcessId (0x278 = 632)
    sysmon = _ev(
        "Microsoft-Windows-Sysmon/Operational",
        "1",
        {"Image": "C:\\evil.exe", "ParentProcessId": "632"},
    )
    assert _fires(engine, sysmon)
    assert not _fires(engine, _ev("Security", "4624", {"NewProcessName": "C:\\evil.exe"}))


def test_service_rules_are_indexed_by_their_eventid() -> None:
    engine = _rule(
        "{product: windows, service: system}",
        "  sel: {EventID: 7045, ServiceName: x}\n  condition: sel\n",
    )
    compiled = engine.rules[0]
    assert compiled.accepts("System", 7045) and not compiled.accepts("System", 7036)


def test_view_fields() -> None:
    orig, low = build(
        _ev(
            "Security",
            {"Qualifiers": "0", "Value": "1102"},
            None,
            {
                "LogFileCleared": {
                    "xmlns": "x",
                    "SubjectUserName": "Admin",
                    "SubjectLogonId": "0x000003e7",
                }
            },
        )
    )
    assert orig["EventID"] == "1102" and orig["Provider_Name"] == "P"
    assert orig["SubjectUserName"] == "Admin" and low["SubjectUserName"] == "admin"
    assert orig["SubjectLogonId"] == "0x3e7" and "xmlns" not in orig
    orig, _ = build(
        _ev(
            "Windows PowerShell",
            "400",
            {
                "Data": [
                    "Available",
                    "None",
                    "\tNewEngineState=Available\n\tHostApplication=powershell -nop",
                ]
            },
        )
    )
    assert orig["HostApplication"] == "powershell -nop"
    assert isinstance(orig["Data"], tuple)


def test_unnamed_data_matches_any_element() -> None:
    engine = _rule(
        "{product: windows, category: ps_classic_start}",
        "  sel: {Data|contains: 'HostName=ConsoleHost'}\n  condition: sel\n",
    )
    ev = _ev(
        "Windows PowerShell",
        {"Qualifiers": "0", "Value": "400"},
        {"Data": ["Available", "x\n\tHostName=ConsoleHost\n"]},
    )
    assert _fires(engine, ev)


_VALUES = st.sampled_from(["0x0001", "0x0", "0x00ff", "0x1", "a\x000x0f", "x", "", "0x0\x00"])


@given(st.dictionaries(st.sampled_from(["A", "B", "C", "D", "E"]), _VALUES, min_size=1))
def test_zero_padded_hex_is_unpadded_wherever_it_is(data: dict[str, str]) -> None:
    """The joined-text search for padded hex (any position, NULs inside values) == per value."""
    orig, _ = build(_ev("Security", "4624", data))
    assert {k: orig[k] for k in data} == {k: _text(v) for k, v in data.items()}


@given(st.dictionaries(st.text(max_size=3), st.text(alphabet="aΣİıſ\x00 ẞK", max_size=6)))
def test_lowered_equals_lower_casing_each_value(orig: dict[str, str]) -> None:
    """Joining, lower-casing and splitting == `str.lower` per value (final sigma, NULs)."""
    assert lowered(dict(orig)) == {k: v.lower() for k, v in orig.items()}
