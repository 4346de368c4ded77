"""Kernel records → Sysmon-shaped EventData (pure): event ids, task names and field builders.

``EbpfSource`` (``source.py``) keeps the process table and emits events; the builders here turn
one decoded record (``records.Record``) into the fields of its event, with no state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from agent.render import sysmon_time
from agent.sources.ebpf.records import EV, Record, ip_text
from agent.sources.procfs import ProcInfo, user_name

__all__ = [
    "EID",
    "TASKS",
    "ZERO_GUID",
    "access_data",
    "bind_fields",
    "bpf_fields",
    "connection_fields",
    "cred_fields",
    "exit_code",
    "file_fields",
    "module_fields",
    "stdio_kinds",
]

ZERO_GUID = "{00000000-0000-0000-0000-000000000000}"
_PROTO = {6: "tcp", 17: "udp"}
_FD_KINDS = ("-", "socket", "pipe", "char", "file", "other")
_PTRACE = {
    16: "PTRACE_ATTACH",
    0x4206: "PTRACE_SEIZE",
    4: "PTRACE_POKETEXT",
    5: "PTRACE_POKEDATA",
    6: "PTRACE_POKEUSER",
}
_SETID = {
    105: "setuid",
    106: "setgid",
    113: "setreuid",
    114: "setregid",
    117: "setresuid",
    119: "setresgid",
}
_BPF_PROG_TYPES = {
    1: "socket_filter",
    2: "kprobe",
    3: "sched_cls",
    4: "sched_act",
    5: "tracepoint",
    6: "xdp",
    7: "perf_event",
    8: "cgroup_skb",
    9: "cgroup_sock",
    17: "raw_tracepoint",
    26: "tracing",
    29: "lsm",
    30: "sk_lookup",
    31: "syscall",
    32: "netfilter",
}


class EID:
    """Event ids: Sysmon's where it defines one, Heron extensions (≥ 100) otherwise."""

    PROCESS_CREATE = 1
    NETWORK_CONNECT = 3
    PROCESS_TERMINATE = 5
    PROCESS_ACCESS = 10
    FILE_CREATE = 11
    DNS_QUERY = 22
    FILE_DELETE = 23
    FILE_ACCESS = 100
    FILE_RENAME = 101
    FILE_ATTRIBUTES = 102
    PROCESS_FORK = 103
    SOCKET_BIND = 104
    KERNEL_MODULE_LOAD = 105
    BPF_PROGRAM_LOAD = 106
    CREDENTIAL_CHANGE = 107


TASKS = {
    EID.PROCESS_ACCESS: "Process accessed (rule: ProcessAccess)",
    EID.DNS_QUERY: "Dns query (rule: DnsQuery)",
    EID.FILE_ACCESS: "File accessed (heron)",
    EID.FILE_RENAME: "File renamed (heron)",
    EID.FILE_ATTRIBUTES: "File attributes changed (heron)",
    EID.PROCESS_FORK: "Process forked (heron)",
    EID.SOCKET_BIND: "Socket bound (heron)",
    EID.KERNEL_MODULE_LOAD: "Kernel module load (heron)",
    EID.BPF_PROGRAM_LOAD: "BPF program load (heron)",
    EID.CREDENTIAL_CHANGE: "Credentials changed (heron)",
}


def stdio_kinds(kinds: int) -> str:
    """What stdin, stdout, stderr are ("socket,socket,socket" for a reverse shell)."""
    return ",".join(_FD_KINDS[min((kinds >> s) & 0xFF, 5)] for s in (0, 8, 16))


def exit_code(rec: Record) -> str:
    """The exit code of an exit record, shell-style (128 + signal when killed)."""
    code = rec.aux[0] & 0xFFFF
    return str(code >> 8 if code & 0x7F == 0 else 128 + (code & 0x7F))


def connection_fields(rec: Record, names: Mapping[str, str]) -> dict[str, str]:
    """Sysmon 3 fields of a connect/accept/UDP send (``names``: IP → last DNS name asked)."""
    family, proto, lport, rport, laddr, raddr = rec.net
    rip = ip_text(family, raddr)
    v6 = "true" if family == 10 and ":" in rip else "false"
    return {
        "Protocol": _PROTO.get(proto, str(proto)),
        "Initiated": "false" if rec.type == EV.ACCEPT else "true",
        "SourceIsIpv6": v6,
        "SourceIp": ip_text(family, laddr),
        "SourceHostname": "-",
        "SourcePort": str(lport),
        "SourcePortName": "-",
        "DestinationIsIpv6": v6,
        "DestinationIp": rip,
        "DestinationHostname": names.get(rip, "-"),
        "DestinationPort": str(rport),
        "DestinationPortName": "-",
    }


def bind_fields(rec: Record) -> dict[str, str]:
    """Fields of a socket bind (Heron 104)."""
    family, proto, lport, _rport, laddr, _raddr = rec.net
    return {
        "Protocol": _PROTO.get(proto, str(proto)),
        "SourceIp": ip_text(family, laddr),
        "SourcePort": str(lport),
        "SourceIsIpv6": "true" if family == 10 else "false",
    }


def file_fields(rec: Record, utc_time: str) -> tuple[int, dict[str, str]]:
    """(event id, fields) of a file record: Sysmon 11/23, Heron 100-102."""
    path = os.path.normpath(rec.text(0)) if rec.fields[0] else "-"
    t = rec.type
    if t == EV.FILE_CREATE:
        return EID.FILE_CREATE, {"TargetFilename": path, "CreationUtcTime": utc_time}
    if t == EV.FILE_CLOSE_WRITE:
        return EID.FILE_ACCESS, {"TargetFilename": path, "Operation": "close_write"}
    if t == EV.FILE_UNLINK:
        return EID.FILE_DELETE, {
            "TargetFilename": path,
            "Hashes": "-",
            "IsExecutable": "false",
            "Archived": "false",
        }
    if t == EV.FILE_RENAME:
        new = os.path.normpath(rec.text(1)) if rec.fields[1] else "-"
        return EID.FILE_RENAME, {"SourceFilename": path, "TargetFilename": new}
    if t == EV.FILE_CHMOD:
        mode = f"{rec.aux[0] & 0o7777:04o}"
        return EID.FILE_ATTRIBUTES, {"TargetFilename": path, "Operation": "chmod", "Mode": mode}
    uid, gid = rec.aux[0] & 0xFFFFFFFF, rec.aux[1] & 0xFFFFFFFF
    return EID.FILE_ATTRIBUTES, {
        "TargetFilename": path,
        "Operation": "chown",
        "OwnerUid": "-1" if uid == 0xFFFFFFFF else str(uid),
        "OwnerGid": "-1" if gid == 0xFFFFFFFF else str(gid),
    }


def access_data(rec: Record, src: ProcInfo, target: ProcInfo | None, ts: float) -> dict[str, str]:
    """Sysmon 10 (ProcessAccess) EventData of a ptrace record."""
    target_pid, request = rec.aux[0] & 0xFFFFFFFF, rec.aux[1]
    return {
        "RuleName": "-",
        "UtcTime": sysmon_time(ts),
        "SourceProcessGuid": src.guid,
        "SourceProcessId": str(src.pid),
        "SourceThreadId": str(rec.tid),
        "SourceImage": src.image,
        "SourceUser": src.user,
        "TargetProcessGuid": target.guid if target else ZERO_GUID,
        "TargetProcessId": str(target_pid),
        "TargetImage": target.image if target else "-",
        "TargetUser": target.user if target else "-",
        "GrantedAccess": _PTRACE.get(request, str(request)),
        "CallTrace": "-",
    }


def module_fields(rec: Record) -> dict[str, str]:
    """Fields of a kernel module load (Heron 105)."""
    finit, ret = rec.aux[0], rec.aux[1]
    if ret >= 1 << 63:
        ret -= 1 << 64
    return {
        "ImageLoaded": rec.text(0) if rec.fields[0] else "-",
        "Syscall": "finit_module" if finit else "init_module",
        "Result": str(ret),
    }


def bpf_fields(rec: Record) -> dict[str, str]:
    """Fields of a BPF program load (Heron 106)."""
    ptype = rec.aux[0]
    return {
        "ProgramType": _BPF_PROG_TYPES.get(ptype, str(ptype)),
        "ProgramName": rec.text(0) or "-",
    }


def cred_fields(rec: Record, info: ProcInfo) -> dict[str, str]:
    """Fields of a set*id call (Heron 107); ``info``: the process before the change."""
    nr = rec.aux[0]
    args = [a & 0xFFFFFFFF for a in rec.aux[1:4]]
    nargs = 1 if nr in (105, 106) else 2 if nr in (113, 114) else 3
    return {
        "Syscall": _SETID.get(nr, str(nr)),
        "Arguments": " ".join("-1" if a == 0xFFFFFFFF else str(a) for a in args[:nargs]),
        "PreviousUser": info.user,
        "PreviousUid": str(info.uid),
        "Uid": str(rec.uid),
        "EUid": str(rec.euid),
        "Gid": str(rec.gid),
        "EGid": str(rec.egid),
        "TargetUser": user_name(rec.euid),
    }
