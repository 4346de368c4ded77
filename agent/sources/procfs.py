"""Linux /proc reading: process details and the shared pid → process directory.

``read_proc(pid)`` snapshots one process (image, command line, cwd, user, parent, start time).
``PidDirectory`` is the thread-safe map the live sources share so that network and file events
carry the same ProcessGuid as the process-creation event; exited pids linger briefly so late
events (a connection seen after exit) are still attributed.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from agent.render import process_guid

__all__ = ["PidDirectory", "ProcInfo", "WaitBudget", "read_boot_id", "read_proc", "user_name"]

_USERS: dict[int, str] = {}


def user_name(uid: int) -> str:
    """User name of ``uid`` (cached), or the number as text."""
    name = _USERS.get(uid)
    if name is None:
        import pwd  # Unix only; agent.host imports this module on Windows too

        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        _USERS[uid] = name
    return name


def read_boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return "no-boot-id"


@dataclass(frozen=True, slots=True)
class ProcInfo:
    """What /proc says about one process at one moment."""

    pid: int
    ppid: int
    image: str
    command_line: str
    cwd: str
    uid: int
    user: str
    start_ticks: int
    comm: str
    guid: str = ""
    exec_seq: int = 0
    complete: bool = True  # False when /proc/PID/exe was unreadable (process exiting)

    def with_guid(self, boot_id: str, exec_seq: int = 0) -> ProcInfo:
        guid = process_guid(boot_id, self.pid, self.start_ticks * 1000 + exec_seq)
        return replace(self, guid=guid, exec_seq=exec_seq)


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def read_proc(pid: int, root: str = "/proc") -> ProcInfo | None:
    """Snapshot ``pid`` from /proc; ``None`` when it is already gone."""
    base = f"{root}/{pid}"
    try:
        stat = _read(f"{base}/stat").decode("utf-8", "replace")
    except OSError:
        return None
    rparen = stat.rfind(")")
    comm = stat[stat.find("(") + 1 : rparen]
    rest = stat[rparen + 2 :].split()
    ppid = int(rest[1])
    start_ticks = int(rest[19])
    try:
        image = os.readlink(f"{base}/exe")
    except OSError:
        image = ""
    if image.endswith(" (deleted)"):
        image = image[: -len(" (deleted)")]
    try:
        raw = _read(f"{base}/cmdline")
        command_line = " ".join(a.decode("utf-8", "replace") for a in raw.split(b"\0") if a)
    except OSError:
        command_line = ""
    try:
        cwd = os.readlink(f"{base}/cwd")
    except OSError:
        cwd = ""
    uid = -1
    try:
        for line in _read(f"{base}/status").splitlines():
            if line.startswith(b"Uid:"):
                uid = int(line.split()[1])
                break
    except OSError:
        pass
    return ProcInfo(
        pid,
        ppid,
        image or comm,
        command_line or comm,
        cwd,
        uid,
        user_name(uid) if uid >= 0 else "",
        start_ticks,
        comm,
        complete=bool(image),
    )


class WaitBudget:
    """Caps the time a source spends waiting for attribution (≤ ``per_second`` s each second).

    A burst of events from processes that are already gone must not stall the source thread.
    """

    def __init__(
        self, per_second: float = 0.05, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_second = per_second
        self._clock = clock
        self._window = clock()
        self._used = 0.0

    def take(self, wanted: float) -> float:
        now = self._clock()
        if now - self._window >= 1.0:
            self._window, self._used = now, 0.0
        grant = max(0.0, min(wanted, self.per_second - self._used))
        self._used += grant
        return grant


class PidDirectory:
    """pid → current ``ProcInfo``; exited entries are kept for ``linger`` seconds."""

    def __init__(
        self,
        boot_id: str,
        *,
        linger: float = 30.0,
        max_exited: int = 4096,
        max_live: int = 65536,
        clock: Callable[[], float] = time.monotonic,
        reader: Callable[[int], ProcInfo | None] = read_proc,
    ) -> None:
        self.boot_id = boot_id
        self.linger = linger
        self.max_exited = max_exited
        self.max_live = max_live
        self._clock = clock
        self._reader = reader
        self._live: dict[int, ProcInfo] = {}
        self._exited: OrderedDict[int, tuple[float, ProcInfo]] = OrderedDict()
        self._lock = threading.Condition()

    def on_exec(self, pid: int) -> ProcInfo | None:
        """Re-read ``pid`` after an exec; a re-exec of a known pid gets a new GUID."""
        info = self._reader(pid)
        if info is None:
            return None
        with self._lock:
            prev = self._live.get(pid)
            seq = prev.exec_seq + 1 if prev and prev.start_ticks == info.start_ticks else 0
            info = info.with_guid(self.boot_id, seq)
            self._live[pid] = info
            self._exited.pop(pid, None)
            if len(self._live) > self.max_live:
                self._prune()
            self._lock.notify_all()
        return info

    def register(self, info: ProcInfo) -> None:
        """Record ``info`` as the current process of its pid (eBPF sensor: no /proc read)."""
        with self._lock:
            self._live[info.pid] = info
            self._exited.pop(info.pid, None)
            if len(self._live) > self.max_live:
                self._prune()
            self._lock.notify_all()

    def _prune(self) -> None:
        """Forget pids that no longer exist (exit events lost to a netlink overflow)."""
        for pid in [p for p in self._live if not os.path.exists(f"/proc/{p}")]:
            del self._live[pid]

    def on_exit(self, pid: int) -> ProcInfo | None:
        with self._lock:
            info = self._live.pop(pid, None)
            if info is not None:
                self._exited[pid] = (self._clock(), info)
                while len(self._exited) > self.max_exited:
                    self._exited.popitem(last=False)
            self._expire()
        return info

    def _expire(self) -> None:
        deadline = self._clock() - self.linger
        while self._exited:
            pid, (when, _) = next(iter(self._exited.items()))
            if when >= deadline:
                break
            del self._exited[pid]

    def wait_for(self, pid: int, timeout: float) -> ProcInfo | None:
        """Wait up to ``timeout`` s for the exec of ``pid`` to be registered by another source.

        A file or network event of a short-lived process can be read before the proc connector
        thread has handled its exec; this lets such events carry the right image and GUID.
        """
        with self._lock:
            self._lock.wait_for(lambda: pid in self._live or pid in self._exited, timeout)
            info = self._live.get(pid)
            if info is None and pid in self._exited:
                info = self._exited[pid][1]
            return info

    def get(self, pid: int) -> ProcInfo | None:
        """Known info for ``pid``, else a fresh /proc read (registered, GUID computed)."""
        with self._lock:
            info = self._live.get(pid)
            if info is None and pid in self._exited:
                info = self._exited[pid][1]
        if info is not None:
            return info
        fresh = self._reader(pid)
        if fresh is None:
            return None
        fresh = fresh.with_guid(self.boot_id)
        if not fresh.complete:
            return fresh  # exiting: do not pin a partial entry; the exec may still arrive
        with self._lock:
            return self._live.setdefault(pid, fresh)

    def __len__(self) -> int:
        return len(self._live) + len(self._exited)
