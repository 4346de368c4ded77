"""Built-in IoC matching (rules/iocs.py): every type, parent domains, normalisation, merging."""

from __future__ import annotations

from typing import Any

import pytest

from rules.iocs import IocHit, IocSet, ioc_rules, merge_detection, normalize
from rules.wire import IOC_TYPES, Ioc


def ev(**data: str) -> dict[str, Any]:
    return {
        "Event": {
            "System": {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1},
            "EventData": dict(data),
        }
    }


IOCS = [
    Ioc("8A2122E8162DBEF04694B9C3E0B6CDEE", "md5"),
    {"type": "sha1", "value": "f1efb0fddc156e4c61c5f78a54700e4e7984d55d"},
    {"type": "sha256", "value": "B99D61D874728EDC0918CA0EB10EAB93D381E7367E377406E65963366C874450"},
    {"type": "imphash", "value": "272245e2988e1e430500b852c4fb5e18"},
    {"type": "domain", "value": "evil.example"},
    {"type": "hostname", "value": "c2.bad.test."},
    {"type": "ip-dst", "value": "203.0.113.7"},
    {"type": "ip-src", "value": "2001:db8::1"},
    {"type": "filename", "value": "mimikatz.exe"},
    {"type": "filename", "value": r"C:\Temp\Drop\x.dll"},
    {
        "type": "regkey",
        "value": r"HKEY_LOCAL_MACHINE\Software\Microsoft\Windows\CurrentVersion\Run",
    },
    {"type": "named-pipe", "value": "msagent_fd"},
    {"type": "nonsense", "value": "x"},
    {"type": "md5", "value": ""},
]
S = IocSet.from_iocs(IOCS)

CASES = [
    ("md5", ev(Hashes="SHA1=00,MD5=8A2122E8162DBEF04694B9C3E0B6CDEE"), "Hashes"),
    ("sha1", ev(ImageHashes="SHA1=F1EFB0FDDC156E4C61C5F78A54700E4E7984D55D"), "ImageHashes"),
    (
        "sha256",
        ev(Hashes="SHA256=b99d61d874728edc0918ca0eb10eab93d381e7367e377406e65963366c874450"),
        "Hashes",
    ),
    ("imphash", ev(Hashes="IMPHASH=272245E2988E1E430500B852C4FB5E18"), "Hashes"),
    ("domain", ev(QueryName="evil.example"), "QueryName"),
    ("domain", ev(QueryName="a.b.CDN.evil.example."), "QueryName"),
    ("hostname", ev(DestinationHostname="x.c2.bad.test"), "DestinationHostname"),
    ("ip-dst", ev(DestinationIp="203.0.113.7"), "DestinationIp"),
    (
        "ip-dst",
        ev(QueryName="ok.test", QueryResults="type:  5 ok.test;::ffff:203.0.113.7;"),
        "QueryResults",
    ),
    ("ip-src", ev(SourceIp="2001:0db8:0000::0001"), "SourceIp"),
    ("ip-src", ev(IpAddress="2001:db8::1"), "IpAddress"),
    ("filename", ev(Image=r"C:\Users\bob\Mimikatz.EXE"), "Image"),
    ("filename", ev(ImageLoaded=r"c:\temp\drop\X.dll"), "ImageLoaded"),
    ("filename", ev(TargetFilename="/tmp/mimikatz.exe"), "TargetFilename"),
    (
        "regkey",
        ev(TargetObject=r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run\evil"),
        "TargetObject",
    ),
    (
        "regkey",
        ev(TargetObject=r"\REGISTRY\MACHINE\Software\Microsoft\Windows\CurrentVersion\Run"),
        "TargetObject",
    ),
    ("named-pipe", ev(PipeName=r"\MSAgent_FD"), "PipeName"),
]


@pytest.mark.parametrize(
    ("ioc_type", "event", "field"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_every_ioc_type_matches(ioc_type: str, event: dict[str, Any], field: str) -> None:
    hits = S.match(event)
    assert [(h.type, h.field) for h in hits] == [(ioc_type, field)]


@pytest.mark.parametrize(
    "event",
    [
        ev(QueryName="notevil.example"),  # suffix but not at a label boundary
        ev(QueryName="example"),  # parent of an indicator, not a child
        ev(DestinationHostname="bad.test"),
        ev(DestinationIp="203.0.113.8"),
        ev(SourceIp="203.0.113.7"),  # ip-dst indicator, source field
        ev(Image=r"C:\x\mimikatz.exe.bak"),
        ev(TargetObject=r"HKLM\Software\Microsoft\Windows\CurrentVersion\RunOnce"),
        ev(Hashes="MD5=0000"),
        ev(PipeName=r"\other"),
    ],
    ids=str,
)
def test_near_misses_do_not_match(event: dict[str, Any]) -> None:
    assert S.match(event) == []


def test_set_counts_only_known_nonempty_types() -> None:
    assert len(S) == 12
    assert set(S.by_type) <= set(IOC_TYPES)
    assert IocSet.from_iocs([]).match(ev(QueryName="evil.example")) == []
    assert S.match({"no": "event"}) == []


def test_normalize() -> None:
    assert normalize("ip-dst", "::ffff:10.0.0.1") == "10.0.0.1"
    assert normalize("regkey", "HKEY_CURRENT_USER\\Software\\") == "hkcu\\software"
    assert normalize("domain", "Evil.Example.") == "evil.example"
    assert normalize("named-pipe", "pipe") == "\\pipe"


def test_ioc_rules_and_merge_into_existing_detection() -> None:
    hits = [
        IocHit("md5", "a", "Hashes"),
        IocHit("domain", "b", "QueryName"),
        IocHit("md5", "c", "ImageHashes"),
    ]
    block = ioc_rules(hits, criticality=7, actions=["report", "report"])
    assert block == {
        "Signature": ["IoC:domain", "IoC:md5"],
        "Criticality": 7,
        "Actions": ["report"],
    }
    assert ioc_rules([]) is None
    event = ev()
    event["Event"]["Detection"] = {"Signature": ["Rule"], "Criticality": 6, "Actions": ["brief"]}
    merged = merge_detection(event, block)
    assert merged == {
        "Signature": ["IoC:domain", "IoC:md5", "Rule"],
        "Criticality": 10,
        "Actions": ["brief", "report"],
    }
    fresh = ev()
    assert merge_detection(fresh, block)["Criticality"] == 7


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

LABEL = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-"), min_size=1, max_size=12)


@given(st.lists(LABEL, min_size=2, max_size=4), st.lists(LABEL, max_size=3), st.booleans())
def test_parent_domain_matching_property(domain: list[str], prefix: list[str], upper: bool) -> None:
    indicator = ".".join(domain)
    name = ".".join(prefix + domain)
    s = IocSet.from_iocs([{"type": "domain", "value": indicator}])
    hits = s.match(ev(QueryName=name.upper() if upper else name))
    assert [(h.type, h.value) for h in hits] == [("domain", indicator)]
    # gluing a label onto the first indicator label breaks the boundary: no match
    glued = ".".join(prefix + ["x" + domain[0]] + domain[1:])
    assert s.match(ev(QueryName=glued)) == []
