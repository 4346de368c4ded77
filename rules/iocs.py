"""Built-in IoC matching for every IoC type, owned by the agent (stdlib only).

``IocSet.from_iocs`` indexes indicators (``rules.wire.Ioc`` objects or ``{"type", "value"}``
dicts) by type; ``IocSet.match(event)`` returns one ``IocHit`` per matching (type, value, field).
``ioc_rules(hits)`` turns hits into a Detection block whose signatures are ``IoC:<type>``, and
``merge_detection`` folds that block into an event's existing ``Event.Detection``.

What each type is compared with (values are normalised: lower case, IPs canonical, registry
hives abbreviated):

* md5 / sha1 / sha256 / imphash: ``KEY=value`` pairs of ``Hashes``, ``ImageHashes``,
  ``SourceHashes``, ``TargetHashes`` (and bare ``MD5``/``SHA1``/``SHA256``/``IMPHASH`` fields);
* domain / hostname: ``QueryName``, ``DestinationHostname``, ``SourceHostname``,
  ``WorkstationName``; a name also matches an indicator naming any of its parent domains
  (``a.b.evil.com`` matches ``evil.com``; WHIDS looked only at the last 2–4 labels);
* ip-dst: ``DestinationIp`` and DNS answers (``QueryResults``); ip-src: ``SourceIp``,
  ``IpAddress`` (Security logons);
* filename: ``TargetFilename``, ``Image``, ``ImageLoaded``, ``TargetImage``, ``SourceImage``,
  ``OriginalFileName`` — an indicator with a path separator compares whole paths, otherwise base
  names;
* regkey: ``TargetObject`` — the key itself or anything below it;
* named-pipe: ``PipeName``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast

__all__ = ["IOC_FIELDS", "IocHit", "IocSet", "ioc_rules", "merge_detection", "normalize"]

HASH_TYPES = ("md5", "sha1", "sha256", "imphash")
_HASH_LEN = {"md5": 32, "sha1": 40, "sha256": 64, "imphash": 32}

IOC_FIELDS: dict[str, tuple[str, ...]] = {
    "hash": ("Hashes", "ImageHashes", "SourceHashes", "TargetHashes", "Hash"),
    "domain": ("QueryName", "DestinationHostname", "SourceHostname", "WorkstationName"),
    "ip-dst": ("DestinationIp", "QueryResults"),
    "ip-src": ("SourceIp", "IpAddress"),
    "filename": (
        "TargetFilename",
        "Image",
        "ImageLoaded",
        "TargetImage",
        "SourceImage",
        "OriginalFileName",
    ),
    "regkey": ("TargetObject",),
    "named-pipe": ("PipeName",),
}
_HIVES = (
    (r"\registry\machine", "hklm"),
    (r"hkey_local_machine", "hklm"),
    (r"\registry\user", "hku"),
    (r"hkey_users", "hku"),
    (r"hkey_current_user", "hkcu"),
    (r"hkey_classes_root", "hkcr"),
)
_SPLIT_RE = re.compile(r"[;,\s]+")


def _norm_ip(value: str) -> str:
    value = value.strip().strip("[]")
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return value.lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _norm_regkey(value: str) -> str:
    v = value.strip().lower().rstrip("\\")
    for prefix, short in _HIVES:
        if v.startswith(prefix):
            return short + v[len(prefix) :]
    return v


def normalize(ioc_type: str, value: str) -> str:
    """Canonical form of an indicator value for its type."""
    v = str(value).strip()
    if ioc_type in ("ip-src", "ip-dst"):
        return _norm_ip(v)
    if ioc_type == "regkey":
        return _norm_regkey(v)
    if ioc_type in ("domain", "hostname"):
        return v.lower().rstrip(".")
    if ioc_type == "named-pipe":
        v = v.lower()
        return v if v.startswith("\\") else "\\" + v
    return v.lower()


@dataclass(frozen=True, slots=True)
class IocHit:
    """One indicator found in one event field."""

    type: str
    value: str
    field: str


@dataclass(frozen=True, slots=True)
class IocSet:
    """Indicators indexed by type, ready for matching."""

    by_type: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_iocs(cls, iocs: Iterable[object]) -> IocSet:
        """Build from ``Ioc`` objects or mappings with ``type`` and ``value``; bad types skipped."""
        sets: dict[str, set[str]] = {}
        for ioc in iocs:
            if isinstance(ioc, Mapping):
                t, v = ioc.get("type"), ioc.get("value")
            else:
                t, v = getattr(ioc, "type", None), getattr(ioc, "value", None)
            if not isinstance(t, str) or not isinstance(v, str) or not v.strip():
                continue
            t = t.strip().lower()
            if t not in _KNOWN:
                continue
            sets.setdefault(t, set()).add(normalize(t, v))
        return cls({k: frozenset(v) for k, v in sets.items()})

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_type.values())

    def match(self, event: Mapping[str, object]) -> list[IocHit]:
        """Every (type, value, field) of this set found in ``event``'s EventData."""
        if not self.by_type:
            return []
        ev = event.get("Event") if isinstance(event, Mapping) else None
        data = ev.get("EventData") if isinstance(ev, Mapping) else None
        if not isinstance(data, Mapping):
            return []
        hits: list[IocHit] = []
        if any(t in self.by_type for t in HASH_TYPES):
            self._match_hashes(data, hits)
        for t in ("domain", "hostname"):
            if t in self.by_type:
                self._match_domains(t, data, hits)
        for t in ("ip-dst", "ip-src"):
            if t in self.by_type:
                self._match_ips(t, data, hits)
        if "filename" in self.by_type:
            self._match_files(data, hits)
        if "regkey" in self.by_type:
            self._match_regkeys(data, hits)
        if "named-pipe" in self.by_type:
            pipes = self.by_type["named-pipe"]
            for f in IOC_FIELDS["named-pipe"]:
                v = data.get(f)
                if isinstance(v, str) and normalize("named-pipe", v) in pipes:
                    hits.append(IocHit("named-pipe", normalize("named-pipe", v), f))
        return hits

    def _match_hashes(self, data: Mapping[str, object], hits: list[IocHit]) -> None:
        for f in IOC_FIELDS["hash"]:
            v = data.get(f)
            if not isinstance(v, str):
                continue
            for part in v.split(","):
                if "=" not in part:
                    continue
                k, h = part.split("=", 1)
                t = k.strip().lower()
                h = h.strip().lower()
                if t in self.by_type and h in self.by_type[t]:
                    hits.append(IocHit(t, h, f))
        for t in HASH_TYPES:
            v = data.get(t.upper())
            if isinstance(v, str) and t in self.by_type and v.lower() in self.by_type[t]:
                hits.append(IocHit(t, v.lower(), t.upper()))

    def _match_domains(self, t: str, data: Mapping[str, object], hits: list[IocHit]) -> None:
        domains = self.by_type[t]
        for f in IOC_FIELDS["domain"]:
            v = data.get(f)
            if not isinstance(v, str) or not v or v == "-":
                continue
            name = normalize("domain", v)
            labels = name.split(".")
            for i in range(len(labels)):
                candidate = ".".join(labels[i:])
                if candidate in domains and (i == 0 or "." in candidate):
                    hits.append(IocHit(t, candidate, f))
                    break

    def _match_ips(self, t: str, data: Mapping[str, object], hits: list[IocHit]) -> None:
        ips = self.by_type[t]
        for f in IOC_FIELDS[t]:
            v = data.get(f)
            if not isinstance(v, str) or not v:
                continue
            values = _SPLIT_RE.split(v) if f == "QueryResults" else [v]
            for raw in values:
                raw = raw.strip()
                if not raw or raw.startswith("type:"):
                    continue
                ip = _norm_ip(raw)
                if ip in ips:
                    hits.append(IocHit(t, ip, f))

    def _match_files(self, data: Mapping[str, object], hits: list[IocHit]) -> None:
        names = self.by_type["filename"]
        for f in IOC_FIELDS["filename"]:
            v = data.get(f)
            if not isinstance(v, str) or not v:
                continue
            full = v.lower()
            base = re.split(r"[\\/]", full)[-1]
            if full in names:
                hits.append(IocHit("filename", full, f))
            elif base in names:
                hits.append(IocHit("filename", base, f))

    def _match_regkeys(self, data: Mapping[str, object], hits: list[IocHit]) -> None:
        keys = self.by_type["regkey"]
        for f in IOC_FIELDS["regkey"]:
            v = data.get(f)
            if not isinstance(v, str) or not v:
                continue
            path = _norm_regkey(v)
            parts = path.split("\\")
            for i in range(len(parts), 0, -1):
                candidate = "\\".join(parts[:i])
                if candidate in keys:
                    hits.append(IocHit("regkey", candidate, f))
                    break


_KNOWN = frozenset(
    {*HASH_TYPES, "domain", "hostname", "ip-src", "ip-dst", "filename", "regkey", "named-pipe"}
)


class DetectionBlock(TypedDict):
    """The ``Event.Detection`` block of the IoC matches (``ioc_rules``)."""

    Signature: list[str]
    Criticality: int
    Actions: list[str]


def ioc_rules(
    hits: Iterable[IocHit], *, criticality: int = 10, actions: Iterable[str] = ()
) -> DetectionBlock | None:
    """Detection block for ``hits`` (signatures ``IoC:<type>``), or ``None`` without hits."""
    sigs = sorted({f"IoC:{h.type}" for h in hits})
    if not sigs:
        return None
    return {
        "Signature": sigs,
        "Criticality": max(0, min(10, criticality)),
        "Actions": list(dict.fromkeys(actions)),
    }


def merge_detection(
    event: MutableMapping[str, object], block: Mapping[str, object]
) -> dict[str, object]:
    """Fold ``block`` into ``event["Event"]["Detection"]`` (score capped at 10); returns it.

    ``event["Event"]`` must be a dict (the callers check); the blocks are decoded JSON.
    """
    ev = cast("dict[str, object]", event.setdefault("Event", {}))
    current: Any = ev.get("Detection")
    blk: Any = block
    if not isinstance(current, dict):
        current = {"Signature": [], "Criticality": 0, "Actions": []}
    sigs = sorted(set(current.get("Signature") or []) | set(blk.get("Signature") or []))
    crit = min(10, int(current.get("Criticality") or 0) + int(blk.get("Criticality") or 0))
    actions = list(dict.fromkeys([*(current.get("Actions") or []), *(blk.get("Actions") or [])]))
    merged: dict[str, object] = dict(current, Signature=sigs, Criticality=crit, Actions=actions)
    ev["Detection"] = merged
    return merged
