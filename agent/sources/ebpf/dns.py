"""DNS wire-format parsing (RFC 1035) for the eBPF sensor's captured payloads; pure, bounded.

``parse_message`` reads the header, the first question and the answer records (A, AAAA, CNAME),
following compression pointers with a hop limit. Anything malformed gives ``None``.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

__all__ = ["DnsMessage", "parse_message", "sysmon_results"]

_HDR = struct.Struct(">6H")
TYPE_A, TYPE_CNAME, TYPE_AAAA = 1, 5, 28


@dataclass(frozen=True, slots=True)
class DnsMessage:
    """The parts of one DNS message the sensor reports."""

    id: int
    response: bool
    rcode: int
    qname: str
    qtype: int
    answers: list[tuple[int, str]] = field(default_factory=list)  # (type, value)


def _name(buf: bytes, off: int) -> tuple[str, int]:
    """Decode a (possibly compressed) name at ``off``; returns (name, offset after it)."""
    labels: list[str] = []
    end = -1
    for _ in range(64):
        if off >= len(buf):
            raise ValueError("name overruns the message")
        n = buf[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(buf):
                raise ValueError("truncated pointer")
            if end < 0:
                end = off + 2
            off = ((n & 0x3F) << 8) | buf[off + 1]
            continue
        if n & 0xC0:
            raise ValueError("bad label type")
        labels.append(buf[off + 1 : off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    else:
        raise ValueError("too many labels")
    return ".".join(labels), (end if end >= 0 else off)


def parse_message(buf: bytes, *, tcp: bool = False) -> DnsMessage | None:
    """Parse a DNS message; None if malformed.

    ``tcp``: the payload may start with the 2-byte length (a read of length and message at once).
    """
    if tcp and len(buf) >= 14 and struct.unpack_from(">H", buf)[0] == len(buf) - 2:
        buf = buf[2:]
    if len(buf) < _HDR.size:
        return None
    qid, flags, qd, an, _ns, _ar = _HDR.unpack_from(buf)
    if qd < 1:
        return None
    try:
        qname, off = _name(buf, _HDR.size)
        if off + 4 > len(buf):
            return None
        qtype = struct.unpack_from(">H", buf, off)[0]
        off += 4
        for _ in range(qd - 1):
            _, off = _name(buf, off)
            off += 4
        answers: list[tuple[int, str]] = []
        for _ in range(min(an, 64)):
            _, off = _name(buf, off)
            if off + 10 > len(buf):
                break
            rtype, _cls, _ttl, rdlen = struct.unpack_from(">HHIH", buf, off)
            off += 10
            rdata = buf[off : off + rdlen]
            if len(rdata) < rdlen:
                break
            if rtype == TYPE_A and rdlen == 4:
                answers.append((rtype, str(ipaddress.IPv4Address(rdata))))
            elif rtype == TYPE_AAAA and rdlen == 16:
                answers.append((rtype, str(ipaddress.IPv6Address(rdata))))
            elif rtype == TYPE_CNAME:
                answers.append((rtype, _name(buf, off)[0]))
            off += rdlen
    except (ValueError, IndexError):
        return None
    return DnsMessage(qid, bool(flags & 0x8000), flags & 0xF, qname, qtype, answers)


def sysmon_results(answers: list[tuple[int, str]]) -> str:
    """``QueryResults`` as Sysmon writes it: ``type:  5 alias;::ffff:1.2.3.4;2001:db8::1;``."""
    out = []
    for rtype, value in answers:
        if rtype == TYPE_A:
            out.append(f"::ffff:{value};")
        elif rtype == TYPE_AAAA:
            out.append(f"{value};")
        else:
            out.append(f"type:  {rtype} {value};")
    return "".join(out) or "-"
