"""Decoding of the ring-buffer records written by heron.bpf.c (``struct event``); pure.

Layout (little endian, natural alignment): a 132-byte header, then ``data`` holding up to four
variable-length fields whose sizes are in ``len[4]``.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = [
    "EV",
    "EV_NAMES",
    "HEADER",
    "F_ARGS_TRUNC",
    "F_EXE_DELETED",
    "Record",
    "decode",
    "ip_text",
]

HEADER = struct.Struct("<4I3Q2I4I16s40sI4H")
_NET = struct.Struct("<4H16s16s")
_AUX = struct.Struct("<5Q")
F_EXE_DELETED = 1
F_ARGS_TRUNC = 2


class EV:
    """Record types (``EV_*`` in heron.bpf.c)."""

    EXEC = 1
    FORK = 2
    EXIT = 3
    CONNECT = 4
    ACCEPT = 5
    BIND = 6
    UDP_SEND = 7
    DNS_SEND = 8
    DNS_RECV = 9
    FILE_CREATE = 10
    FILE_CLOSE_WRITE = 11
    FILE_UNLINK = 12
    FILE_RENAME = 13
    FILE_CHMOD = 14
    FILE_CHOWN = 15
    PTRACE = 16
    MODULE = 17
    BPF = 18
    CRED = 19
    MAX = 20


EV_NAMES = {v: k.lower() for k, v in vars(EV).items() if k.isupper() and k != "MAX"}


@dataclass(slots=True)
class Record:
    """One decoded record (not frozen: Performance: , a frozen __init__ costs ~1 µs a field)."""

    type: int
    pid: int
    tid: int
    ppid: int
    ts: int  # CLOCK_BOOTTIME ns
    start: int  # start_boottime ns of the process
    pstart: int
    seq: int
    pseq: int
    uid: int
    gid: int
    euid: int
    egid: int
    comm: str
    raw_fixed: bytes
    flags: int
    fields: tuple[bytes, ...]

    @property
    def aux(self) -> tuple[int, ...]:
        return _AUX.unpack(self.raw_fixed)

    @property
    def net(self) -> tuple[int, int, int, int, bytes, bytes]:
        """(family, protocol, local port, remote port, local addr, remote addr)."""
        return _NET.unpack(self.raw_fixed)

    def text(self, i: int) -> str:
        """Field ``i`` as text (up to its first NUL)."""
        return self.fields[i].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def decode(buf: bytes) -> Record:
    """Decode one record; ``ValueError`` when it is shorter than its header says."""
    if len(buf) < HEADER.size:
        raise ValueError(f"record of {len(buf)} bytes < header {HEADER.size}")
    (
        etype,
        pid,
        tid,
        ppid,
        ts,
        start,
        pstart,
        seq,
        pseq,
        uid,
        gid,
        euid,
        egid,
        comm,
        fixed,
        flags,
        l0,
        l1,
        l2,
        l3,
    ) = HEADER.unpack_from(buf)
    fields = []
    off = HEADER.size
    for n in (l0, l1, l2, l3):
        if off + n > len(buf):
            raise ValueError(f"record field of {n} bytes overruns the record")
        fields.append(buf[off : off + n])
        off += n
    return Record(
        etype,
        pid,
        tid,
        ppid,
        ts,
        start,
        pstart,
        seq,
        pseq,
        uid,
        gid,
        euid,
        egid,
        comm.split(b"\0", 1)[0].decode("utf-8", "replace"),
        fixed,
        flags,
        tuple(fields),
    )


def ip_text(family: int, raw: bytes) -> str:
    """Address text; IPv4-mapped IPv6 addresses are shown as IPv4 (as netconn does)."""
    if family == 2:
        return str(ipaddress.IPv4Address(raw[:4]))
    ip = ipaddress.IPv6Address(raw[:16])
    return str(ip.ipv4_mapped) if ip.ipv4_mapped else str(ip)
