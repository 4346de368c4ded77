"""MISP type mapping, normalisation, IoC values seen in events, and the password-protected zip."""

from __future__ import annotations

import io
import os
import zipfile

import pytest

from appliance.misp.mapping import MISP_TYPES, attribute_iocs, event_values, normalise
from appliance.misp.zipcrypto import encrypted_zip
from rules.wire import IOC_TYPES

U = "5b1c8d2e-0000-4000-8000-000000000001"


def test_every_mapped_type_is_a_heron_ioc_type() -> None:
    assert {t for halves in MISP_TYPES.values() for t in halves if t} <= set(IOC_TYPES)


@pytest.mark.parametrize(
    ("mtype", "value", "expected"),
    [
        ("sha256", "A" * 64, [("sha256", "a" * 64)]),
        ("filename|md5", "x.exe|" + "B" * 32, [("md5", "b" * 32), ("filename", "x.exe")]),
        ("domain", "Evil.Example.", [("domain", "evil.example")]),
        ("ip-dst", "2001:db8:0:0::1/128", [("ip-dst", "2001:db8::1")]),
        ("ip-dst", "198.51.100.0/24", []),
        ("ip-src|port", "192.0.2.1|443", [("ip-src", "192.0.2.1")]),
        ("regkey", "HKEY_LOCAL_MACHINE\\Software\\Run", [("regkey", "hklm\\software\\run")]),
        ("named pipe", "\\\\.\\pipe\\MSSE-1234-server", [("named-pipe", "\\msse-1234-server")]),
        ("md5", "not-hex", []),
        ("vulnerability", "CVE-2021-1", []),
    ],
    ids=[
        "hash",
        "composite",
        "domain",
        "ipv6",
        "cidr",
        "port",
        "regkey",
        "pipe",
        "bad-hash",
        "unmapped",
    ],
)
def test_attribute_iocs(mtype: str, value: str, expected: list[tuple[str, str]]) -> None:
    iocs = attribute_iocs(
        {"uuid": U, "type": mtype, "value": value, "event_uuid": "e"}, source="misp"
    )
    assert [(i.type, i.value) for i in iocs] == expected
    if iocs:
        assert iocs[0].uuid == U and all(i.guuid == "e" and i.source == "misp" for i in iocs)
        assert len({i.uuid for i in iocs}) == len(iocs)


def test_event_values_cover_hashes_names_ips_paths_keys_pipes() -> None:
    event = {
        "Event": {
            "EventData": {
                "Hashes": "SHA1=" + "A" * 40 + ",MD5=" + "B" * 32 + ",IMPHASH=" + "C" * 32,
                "Image": "C:\\Tools\\Evil.exe",
                "QueryName": "a.b.c.evil.example",
                "QueryResults": "type: 5 x;::ffff:203.0.113.7;",
                "DestinationIp": "198.51.100.9",
                "DestinationHostname": "-",
                "TargetObject": "HKLM\\Software\\Run\\x",
                "PipeName": "\\msse-1234-server",
            }
        }
    }
    got = set(event_values(event))
    for pair in [
        ("sha1", "a" * 40),
        ("md5", "b" * 32),
        ("imphash", "c" * 32),
        ("filename", "c:\\tools\\evil.exe"),
        ("filename", "evil.exe"),
        ("hostname", "a.b.c.evil.example"),
        ("domain", "evil.example"),
        ("domain", "c.evil.example"),
        ("ip-dst", "203.0.113.7"),
        ("ip-dst", "198.51.100.9"),
        ("regkey", "hklm\\software\\run\\x"),
        ("named-pipe", "\\msse-1234-server"),
    ]:
        assert pair in got
    assert not any(v == "-" for _, v in got)
    assert normalise("hostname", "-") is None


def test_zip_is_readable_by_the_standard_library_with_the_password() -> None:
    data = os.urandom(3000) + b"MZ" * 500
    blob = encrypted_zip([("evil.exe", data)])
    archive = zipfile.ZipFile(io.BytesIO(blob))
    assert archive.namelist() == ["evil.exe"]
    assert archive.getinfo("evil.exe").flag_bits & 0x1
    assert archive.read("evil.exe", pwd=b"infected") == data
    with pytest.raises(RuntimeError, match="password required"):
        archive.read("evil.exe")
    with pytest.raises(RuntimeError, match="Bad password"):
        archive.read("evil.exe", pwd=b"wrong")
    assert data[:64] not in blob  # the content is not stored in clear
