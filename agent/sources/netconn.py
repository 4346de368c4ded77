"""Linux network connections from /proc/net, attributed to processes (Sysmon EventID 3).

Every ``interval`` seconds the TCP (established / connecting) and connected UDP sockets of
/proc/net/{tcp,tcp6,udp,udp6} are listed; a socket not seen in the previous scan becomes one
EventID 3. Sockets are attributed to a process by inode through /proc/PID/fd, scanned only when
an unknown inode appears. Connections shorter than one interval can be missed (documented in
docs/agent.md).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.render import LINUX_CHANNEL, LINUX_PROVIDER, LINUX_PROVIDER_GUID, make_event, sysmon_time
from agent.sources.procfs import WaitBudget

if TYPE_CHECKING:
    from agent.host import Host

__all__ = ["NetConnectionSource", "Socket", "inode_owners", "parse_proc_net"]

logger = logging.getLogger(__name__)

_TCP_STATES = {"01", "02"}  # ESTABLISHED, SYN_SENT
_LISTEN = "0A"


@dataclass(frozen=True, slots=True)
class Socket:
    """One row of /proc/net/{tcp,udp}[6]."""

    protocol: str
    ipv6: bool
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    state: str
    uid: int
    inode: int


def _addr(hexaddr: str, ipv6: bool) -> tuple[str, int]:
    host, port = hexaddr.split(":")
    raw = bytes.fromhex(host)
    if ipv6:
        raw = b"".join(struct.pack("<I", w) for w in struct.unpack(">4I", raw))
        ip = ipaddress.IPv6Address(raw)
        text = str(ip.ipv4_mapped) if ip.ipv4_mapped else str(ip)
    else:
        text = str(ipaddress.IPv4Address(struct.pack("<I", int(host, 16))))
    return text, int(port, 16)


def parse_proc_net(text: str, protocol: str, ipv6: bool) -> list[Socket]:
    """Parse the content of one /proc/net table."""
    out: list[Socket] = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 10:
            continue
        lip, lport = _addr(cols[1], ipv6)
        rip, rport = _addr(cols[2], ipv6)
        out.append(
            Socket(protocol, ipv6, lip, lport, rip, rport, cols[3], int(cols[7]), int(cols[9]))
        )
    return out


def inode_owners(root: str = "/proc") -> dict[int, int]:
    """socket inode → pid, by reading every /proc/PID/fd link."""
    owners: dict[int, int] = {}
    for entry in os.scandir(root):
        if not entry.name.isdigit():
            continue
        fd_dir = f"{root}/{entry.name}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                owners.setdefault(int(target[8:-1]), int(entry.name))
    return owners


@functools.lru_cache(maxsize=4096)
def _port_name(port: int, proto: str) -> str:
    try:
        return socket.getservbyport(port, proto)
    except OSError:
        return "-"


class NetConnectionSource:
    """Polls /proc/net and emits one EventID 3 per new connection."""

    name = "linux-net"
    live = True
    lossless = False

    def __init__(
        self,
        *,
        host: Host,
        interval: float = 0.5,
        root: str = "/proc",
        emit_existing: bool = False,
        owners: Callable[[], dict[int, int]] | None = None,
    ) -> None:
        self.host = host
        self.interval = interval
        self.root = root
        self.emit_existing = emit_existing
        self._owners_fn = owners or (lambda: inode_owners(root))
        self._owners: dict[int, int] = {}
        self._closed = threading.Event()
        self.budget = WaitBudget()

    def scan(self) -> list[Socket]:
        """Current connected sockets."""
        found: list[Socket] = []
        for proto, ipv6, fname in (
            ("tcp", False, "tcp"),
            ("tcp", True, "tcp6"),
            ("udp", False, "udp"),
            ("udp", True, "udp6"),
        ):
            try:
                with open(f"{self.root}/net/{fname}", encoding="ascii") as fh:
                    rows = parse_proc_net(fh.read(), proto, ipv6)
            except OSError:
                continue
            found.extend(rows)
        return found

    def events(self) -> Iterator[dict[str, Any]]:
        seen: set[tuple[str, str, int, str, int, int]] = set()
        first = True
        while not self._closed.is_set():
            rows = self.scan()
            listening = {s.local_port for s in rows if s.state == _LISTEN}
            current: set[tuple[str, str, int, str, int, int]] = set()
            fresh: list[Socket] = []
            for s in rows:
                if s.inode == 0 or s.remote_port == 0:
                    continue
                if s.protocol == "tcp" and s.state not in _TCP_STATES:
                    continue
                key = (s.protocol, s.local_ip, s.local_port, s.remote_ip, s.remote_port, s.inode)
                current.add(key)
                if key not in seen and (not first or self.emit_existing):
                    fresh.append(s)
            seen = current
            first = False
            if fresh and any(s.inode not in self._owners for s in fresh):
                self._owners = self._owners_fn()
            for s in fresh:
                yield self._render(s, initiated=s.local_port not in listening)
            self._closed.wait(self.interval)

    def _render(self, s: Socket, *, initiated: bool) -> dict[str, Any]:
        host = self.host
        ts = host.clock()
        pid = self._owners.get(s.inode, 0)
        info = host.pids.get(pid) if pid else None
        if pid and (info is None or not info.complete):
            info = host.pids.wait_for(pid, self.budget.take(0.02)) or info
        data = {
            "RuleName": "-",
            "UtcTime": sysmon_time(ts),
            "ProcessGuid": info.guid if info else "{00000000-0000-0000-0000-000000000000}",
            "ProcessId": str(pid),
            "Image": info.image if info else "-",
            "User": info.user if info else str(s.uid),
            "Protocol": s.protocol,
            "Initiated": "true" if initiated else "false",
            "SourceIsIpv6": "true" if s.ipv6 else "false",
            "SourceIp": s.local_ip,
            "SourceHostname": "-",
            "SourcePort": str(s.local_port),
            "SourcePortName": _port_name(s.local_port, s.protocol),
            "DestinationIsIpv6": "true" if s.ipv6 else "false",
            "DestinationIp": s.remote_ip,
            "DestinationHostname": "-",
            "DestinationPort": str(s.remote_port),
            "DestinationPortName": _port_name(s.remote_port, s.protocol),
        }
        return make_event(
            channel=LINUX_CHANNEL,
            provider=LINUX_PROVIDER,
            provider_guid=LINUX_PROVIDER_GUID,
            event_id=3,
            data=data,
            computer=host.hostname,
            ts=ts,
            pid=host.agent_pid,
        )

    def close(self) -> None:
        self._closed.set()
