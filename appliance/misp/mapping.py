"""MISP types ↔ Heron IoC types, value normalisation, and IoC values seen in events.

Owns three things that must agree with each other: how a MISP attribute becomes Heron IoCs
(composites split, CIDR handling, MISP's server-side normalisation mirrored, docs/reference/misp.md
§2.2–§2.3), how
values found in a WHIDS/Sysmon event are normalised the same way, and which event fields carry which
kind of value (docs/reference/whids.md §4.2, without pywhids' habit of sending every field to MISP).
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from rules.wire import IOC_TYPES, Ioc

__all__ = [
    "DEFAULT_MISP_TYPES",
    "MISP_TYPES",
    "attribute_iocs",
    "event_values",
    "normalise",
]

# MISP type → Heron IoC types of its halves (None: the half is not an IoC on its own).
MISP_TYPES: dict[str, tuple[str | None, ...]] = {
    "md5": ("md5",),
    "sha1": ("sha1",),
    "sha256": ("sha256",),
    "imphash": ("imphash",),
    "filename|md5": ("filename", "md5"),
    "filename|sha1": ("filename", "sha1"),
    "filename|sha256": ("filename", "sha256"),
    "filename|imphash": ("filename", "imphash"),
    "domain": ("domain",),
    "hostname": ("hostname",),
    "domain|ip": ("domain", "ip-dst"),
    "ip-src": ("ip-src",),
    "ip-dst": ("ip-dst",),
    "ip-src|port": ("ip-src", None),
    "ip-dst|port": ("ip-dst", None),
    "filename": ("filename",),
    "regkey": ("regkey",),
    "regkey|value": ("regkey", None),
    "named pipe": ("named-pipe",),
}
# docs/reference/misp.md §2.3: hashes, network indicators, hash composites; filename, regkey, pipes
# are opt-in.
DEFAULT_MISP_TYPES: tuple[str, ...] = (
    "md5",
    "sha1",
    "sha256",
    "imphash",
    "filename|md5",
    "filename|sha1",
    "filename|sha256",
    "filename|imphash",
    "domain",
    "hostname",
    "ip-src",
    "ip-dst",
)
HASH_TYPES = ("md5", "sha1", "sha256", "imphash")
_HASH_LEN = {32: "md5", 40: "sha1", 64: "sha256"}
_HEX = re.compile(r"^[0-9a-f]+$")
_HIVES = {
    "hkey_local_machine": "hklm",
    "hkey_current_user": "hkcu",
    "hkey_users": "hku",
    "hkey_classes_root": "hkcr",
    "hkey_current_config": "hkcc",
    "\\registry\\machine": "hklm",
    "\\registry\\user": "hku",
}
_PIPE_PREFIX = "\\\\.\\pipe\\"

assert all(t in IOC_TYPES for halves in MISP_TYPES.values() for t in halves if t)


def normalise(ioc_type: str, value: str) -> str | None:
    """Canonical form of a value of Heron type `ioc_type`.

    None when it is not a usable value.

    Mirrors MISP's AttributeValidationTool (lower-case hashes and names, trimmed domain dots,
    /32 and /128 collapsed) and adds what matching on endpoints needs (hive names, pipe prefix).
    """
    value = value.strip()
    if not value or value == "-":
        return None
    if ioc_type in HASH_TYPES:
        value = value.lower()
        return value if _HEX.match(value) else None
    if ioc_type in ("domain", "hostname"):
        value = value.lower().strip(".")
        return value or None
    if ioc_type in ("ip-src", "ip-dst"):
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            return None
        if net.num_addresses != 1:
            return None  # CIDR ranges are skipped; agents match single addresses
        return str(net.network_address)
    if ioc_type == "regkey":
        return _normalise_regkey(value)
    if ioc_type == "named-pipe":
        low = value.lower()
        if low.startswith(_PIPE_PREFIX):
            low = low[len(_PIPE_PREFIX) - 1 :]
        return low if low.startswith("\\") else "\\" + low
    if ioc_type == "filename":
        return value.lower()
    return value


def _normalise_regkey(value: str) -> str:
    low = value.lower().replace("/", "\\")
    for long, short in _HIVES.items():
        if low.startswith(long):
            return short + low[len(long) :]
    return low


def attribute_iocs(
    attr: Mapping[str, Any], *, source: str, enabled: frozenset[str] | None = None
) -> list[Ioc]:
    """Heron IoCs of one MISP attribute row.

    Composites are split on the first `|`.

    `enabled` restricts the Heron types produced (the filename half of `filename|sha256` is only
    kept when `filename` itself is enabled); unknown MISP types give no IoC.
    """
    halves = MISP_TYPES.get(str(attr.get("type", "")))
    if halves is None:
        return []
    raw = str(attr.get("value", ""))
    parts = raw.split("|", 1) if len(halves) == 2 else [raw]
    if len(parts) != len(halves):
        return []
    pairs = [
        (t, p)
        for t, p in zip(halves, parts, strict=True)
        if t is not None and (enabled is None or t in enabled)
    ]
    pairs.sort(key=lambda pair: pair[0] == "filename")  # the hash half keeps the attribute uuid
    attr_uuid = str(attr.get("uuid", ""))
    out: list[Ioc] = []
    for ioc_type, part in pairs:
        value = normalise(ioc_type, part)
        if value is None:
            continue
        out.append(
            Ioc(
                value=value,
                type=ioc_type,
                uuid=_half_uuid(attr_uuid, ioc_type, bool(out)),
                guuid=str(attr.get("event_uuid") or _event_uuid(attr)),
                source=source,
            )
        )
    return out


def _half_uuid(attr_uuid: str, ioc_type: str, secondary: bool) -> str:
    """Uuid of one half of a composite attribute.

    The attribute uuid, or for the second half a uuid5 derived from it.
    """
    if not secondary:
        return attr_uuid
    try:
        return str(uuid.uuid5(uuid.UUID(attr_uuid), ioc_type))
    except ValueError:
        return f"{attr_uuid}:{ioc_type}"


def _event_uuid(attr: Mapping[str, Any]) -> str:
    event = attr.get("Event")
    return str(event.get("uuid", "")) if isinstance(event, Mapping) else ""


# --- values seen in events ------------------------------------------------------------------------

# Sysmon/WHIDS EventData fields and the Heron type their values have (docs/reference/whids.md §4.2).
_PATH_FIELDS = (
    "Image",
    "SourceImage",
    "ImageLoaded",
    "ParentImage",
    "TargetImage",
    "TargetFilename",
    "OriginalFileName",
)
_HOST_FIELDS = ("QueryName", "DestinationHostname", "SourceHostname")
_IP_FIELDS = {
    "DestinationIp": "ip-dst",
    "DestinationIpv6": "ip-dst",
    "SourceIp": "ip-src",
    "SourceIpv6": "ip-src",
}
_HASH_FIELDS = ("Hashes", "ImageHashes", "SourceHashes", "Hash")


def event_values(event: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(Heron type, normalised value) pairs an event carries.

    Hashes, names, IPs, paths, registry keys and pipes.

    Domains are also yielded for their parent domains (last 2–4 labels, as the WHIDS agent checks
    DNS queries), so a sighting on `a.b.evil.example` matches the IoC `evil.example`.
    """
    root = event.get("Event", event)
    if not isinstance(root, Mapping):
        return
    data = root.get("EventData")
    if isinstance(data, Mapping):
        yield from _eventdata_values(data)
    edr = root.get("EdrData")
    if isinstance(edr, Mapping):
        hashes = edr.get("Hashes") or (edr.get("Event") or {}).get("Hashes")
        if isinstance(hashes, str):
            yield from _hash_values(hashes)


def _eventdata_values(data: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for name in _HASH_FIELDS:
        v = data.get(name)
        if isinstance(v, str):
            yield from _hash_values(v)
    for name in _PATH_FIELDS:
        v = data.get(name)
        if isinstance(v, str) and v:
            low = v.lower()
            yield ("filename", low)
            base = re.split(r"[\\/]", low)[-1]
            if base != low:
                yield ("filename", base)
    for name in _HOST_FIELDS:
        v = data.get(name)
        if isinstance(v, str):
            yield from _name_values(v)
    for name, ioc_type in _IP_FIELDS.items():
        v = data.get(name)
        if isinstance(v, str) and (n := normalise(ioc_type, v)):
            yield (ioc_type, n)
    results = data.get("QueryResults")
    if isinstance(results, str):
        for item in results.split(";"):
            item = item.strip().removeprefix("::ffff:")
            if n := normalise("ip-dst", item):
                yield ("ip-dst", n)
    key = data.get("TargetObject")
    if isinstance(key, str) and key:
        yield ("regkey", _normalise_regkey(key))
    pipe = data.get("PipeName")
    if isinstance(pipe, str) and (n := normalise("named-pipe", pipe)):
        yield ("named-pipe", n)


def _hash_values(text: str) -> Iterator[tuple[str, str]]:
    """Sysmon `Hashes` ("SHA1=…,MD5=…,SHA256=…,IMPHASH=…") or a bare hash."""
    for item in text.split(","):
        name, _, value = item.partition("=")
        if not value:
            name, value = "", name
        value = value.strip().lower()
        ioc_type = {"md5": "md5", "sha1": "sha1", "sha256": "sha256", "imphash": "imphash"}.get(
            name.strip().lower()
        ) or _HASH_LEN.get(len(value))
        if ioc_type and _HEX.match(value):
            yield (ioc_type, value)


def _name_values(text: str) -> Iterator[tuple[str, str]]:
    name = normalise("domain", text)
    if name is None:
        return
    yield ("hostname", name)
    labels = name.split(".")
    for n in range(min(len(labels), 4), 1, -1):
        yield ("domain", ".".join(labels[-n:]))
