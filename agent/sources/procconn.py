"""Linux process events from the netlink proc connector (exec / exit, real time).

Emits Sysmon-for-Linux events on ``Linux-Sysmon/Operational``: EventID 1 (process create, on
exec, with /proc details, parent fields and image hashes) and EventID 5 (process terminated).
Needs CAP_NET_ADMIN (root). ``parse_proc_event`` is pure and unit-tested with recorded bytes.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.errors import SourceError
from agent.render import LINUX_CHANNEL, LINUX_PROVIDER, LINUX_PROVIDER_GUID, make_event, sysmon_time
from agent.sources.procfs import ProcInfo

if TYPE_CHECKING:
    from agent.host import Host

__all__ = [
    "PROC_EVENT_EXEC",
    "PROC_EVENT_EXIT",
    "PROC_EVENT_FORK",
    "ProcConnectorSource",
    "ProcEvent",
    "parse_proc_event",
    "proc_connector_available",
]

logger = logging.getLogger(__name__)

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
NLMSG_DONE = 3
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000
_HDR = 16 + 20  # nlmsghdr + cn_msg


@dataclass(frozen=True, slots=True)
class ProcEvent:
    """One decoded proc connector message."""

    what: int
    pid: int
    tgid: int
    parent_pid: int = 0
    exit_code: int = 0


def parse_proc_event(data: bytes) -> list[ProcEvent]:
    """Decode every netlink message of one datagram; unknown kinds are skipped."""
    out: list[ProcEvent] = []
    offset = 0
    while offset + _HDR + 16 <= len(data):
        (length,) = struct.unpack_from("=I", data, offset)
        if length < _HDR + 16 or offset + length > len(data):
            break
        base = offset + _HDR
        what, _cpu, _ts = struct.unpack_from("=IIQ", data, base)
        body = base + 16
        room = offset + length - body
        if what == PROC_EVENT_EXEC and room >= 8:
            pid, tgid = struct.unpack_from("=II", data, body)
            out.append(ProcEvent(what, pid, tgid))
        elif what == PROC_EVENT_FORK and room >= 16:
            ppid, _ptgid, pid, tgid = struct.unpack_from("=IIII", data, body)
            out.append(ProcEvent(what, pid, tgid, parent_pid=ppid))
        elif what == PROC_EVENT_EXIT and room >= 12:
            pid, tgid, code = struct.unpack_from("=III", data, body)
            out.append(ProcEvent(what, pid, tgid, exit_code=code))
        offset += (length + 3) & ~3
    return out


def _control_message(op: int) -> bytes:
    payload = struct.pack("=I", op)
    cn = struct.pack("=IIIIHH", CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    return struct.pack("=IHHII", 16 + len(cn), NLMSG_DONE, 0, 0, os.getpid()) + cn


def proc_connector_available() -> bool:
    """True when a proc connector socket can be opened and subscribed (root on Linux)."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    except (OSError, AttributeError):
        return False
    try:
        sock.bind((0, CN_IDX_PROC))
        sock.send(_control_message(PROC_CN_MCAST_LISTEN))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def process_create_data(
    info: ProcInfo, parent: ProcInfo | None, ts: float, hashes: str
) -> dict[str, Any]:
    """EventData of a Sysmon-for-Linux EventID 1."""
    return {
        "RuleName": "-",
        "UtcTime": sysmon_time(ts),
        "ProcessGuid": info.guid,
        "ProcessId": str(info.pid),
        "Image": info.image,
        "FileVersion": "-",
        "Description": "-",
        "Product": "-",
        "Company": "-",
        "OriginalFileName": "-",
        "CommandLine": info.command_line,
        "CurrentDirectory": info.cwd,
        "User": info.user,
        "LogonGuid": "{00000000-0000-0000-0000-000000000000}",
        "LogonId": str(info.uid),
        "TerminalSessionId": "-1",
        "IntegrityLevel": "High" if info.uid == 0 else "Medium",
        "Hashes": hashes or "-",
        "ParentProcessGuid": parent.guid if parent else "-",
        "ParentProcessId": str(info.ppid),
        "ParentImage": parent.image if parent else "-",
        "ParentCommandLine": parent.command_line if parent else "-",
        "ParentUser": parent.user if parent else "-",
    }


class ProcConnectorSource:
    """Live process create / terminate events (Linux, root)."""

    name = "linux-proc"
    live = True
    lossless = False

    def __init__(
        self, *, host: Host, hash_on_exec: bool = True, poll: float = 0.25, nice: int | None = -10
    ) -> None:
        self.host = host
        self.nice = nice
        self.hash_on_exec = hash_on_exec
        self.poll = poll
        self._closed = threading.Event()
        self.lost = 0  # ENOBUFS receive errors + execs whose process was gone before /proc read
        self.incomplete = 0  # execs seen whose image path vanished before /proc was read (comm)

    def _open(self) -> socket.socket:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            sock.bind((0, CN_IDX_PROC))
            sock.send(_control_message(PROC_CN_MCAST_LISTEN))
        except OSError as ex:
            raise SourceError(f"proc connector unavailable: {ex}") from ex
        sock.settimeout(self.poll)
        return sock

    def _raise_priority(self) -> None:
        """Run this reader thread at a higher priority than the rest of the agent.

        Performance: /proc must be read before a short-lived process exits; on a busy host the
        wake-up latency of this one thread decides that. Linux takes a thread id here.
        """
        if self.nice is None:
            return
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
        except (OSError, AttributeError) as ex:
            logger.info("cannot raise the proc connector thread priority: %s", ex)

    def events(self) -> Iterator[dict[str, Any]]:
        sock = self._open()
        self._raise_priority()
        try:
            while not self._closed.is_set():
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError as ex:  # ENOBUFS: the kernel dropped messages
                    self.lost += 1
                    logger.warning("proc connector receive error (events lost): %s", ex)
                    continue
                for pev in parse_proc_event(data):
                    event = self._render(pev)
                    if event is not None:
                        yield event
        finally:
            try:
                sock.send(_control_message(PROC_CN_MCAST_IGNORE))
            except OSError:
                pass
            sock.close()

    def _render(self, pev: ProcEvent) -> dict[str, Any] | None:
        if pev.pid != pev.tgid:  # thread, not a process
            return None
        host = self.host
        ts = host.clock()
        if pev.what == PROC_EVENT_EXEC:
            info = host.pids.on_exec(pev.pid)
            if info is None:
                self.lost += 1  # the process was gone before /proc could be read
                return None
            if not info.complete:
                self.incomplete += 1  # rendered with the comm name: rules on Image miss it
            parent = host.pids.get(info.ppid) if info.ppid else None
            hashes = ""
            if self.hash_on_exec and info.image.startswith("/"):
                fh = host.hasher.hash_file(info.image)
                hashes = fh.sysmon() if fh else ""
            data = process_create_data(info, parent, ts, hashes)
            return make_event(
                channel=LINUX_CHANNEL,
                provider=LINUX_PROVIDER,
                provider_guid=LINUX_PROVIDER_GUID,
                event_id=1,
                data=data,
                computer=host.hostname,
                ts=ts,
                pid=host.agent_pid,
            )
        if pev.what == PROC_EVENT_EXIT:
            info = host.pids.on_exit(pev.pid)
            if info is None:
                return None
            data = {
                "RuleName": "-",
                "UtcTime": sysmon_time(ts),
                "ProcessGuid": info.guid,
                "ProcessId": str(info.pid),
                "Image": info.image,
                "User": info.user,
            }
            return make_event(
                channel=LINUX_CHANNEL,
                provider=LINUX_PROVIDER,
                provider_guid=LINUX_PROVIDER_GUID,
                event_id=5,
                data=data,
                computer=host.hostname,
                ts=ts,
                pid=host.agent_pid,
            )
        return None

    def close(self) -> None:
        self._closed.set()
