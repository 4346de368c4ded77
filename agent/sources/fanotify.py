"""Linux file events through fanotify (ctypes), in the Sysmon-for-Linux schema.

Two notification groups:

* a *directory-entry* group (``FAN_REPORT_DFID_NAME``, Linux ≥ 5.9) on the watched directories:
  ``FAN_CREATE`` → EventID 11 (FileCreate), ``FAN_DELETE`` → EventID 23 (FileDelete);
* a *file-descriptor* group on the watched directories (``FAN_CLOSE_WRITE`` of children →
  EventID 11 for overwritten files) and on individual files such as canaries (``FAN_OPEN``,
  ``FAN_ACCESS``, ``FAN_MODIFY``, ``FAN_CLOSE_WRITE`` → EventID 100, a Heron extension
  "FileAccess" carrying ``TargetFilename`` and ``Operation``).

Each event is attributed to the acting pid through the shared ``PidDirectory``. Where the kernel
refuses a group (old kernel, no CAP_SYS_ADMIN) the source logs a WARNING and runs with what it has.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import select
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from agent.errors import SourceError
from agent.render import LINUX_CHANNEL, LINUX_PROVIDER, LINUX_PROVIDER_GUID, make_event, sysmon_time
from agent.sources.procfs import WaitBudget

if TYPE_CHECKING:
    from agent.host import Host

__all__ = ["FILE_ACCESS_EID", "FanotifySource", "parse_fd_events", "parse_fid_events"]

logger = logging.getLogger(__name__)

FAN_ACCESS = 0x01
FAN_MODIFY = 0x02
FAN_CLOSE_WRITE = 0x08
FAN_OPEN = 0x20
FAN_CREATE = 0x100
FAN_DELETE = 0x200
FAN_ONDIR = 0x40000000
FAN_EVENT_ON_CHILD = 0x08000000
FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_CLASS_NOTIF = 0x0
FAN_REPORT_DIR_FID = 0x400
FAN_REPORT_NAME = 0x800
FAN_MARK_ADD = 0x1
FAN_EVENT_INFO_TYPE_DFID_NAME = 2
AT_FDCWD = -100
_META = struct.Struct("=IBBHQii")  # event_len, vers, reserved, metadata_len, mask, fd, pid
FILE_ACCESS_EID = 100
_OPS = (
    (FAN_CLOSE_WRITE, "close_write"),
    (FAN_MODIFY, "modify"),
    (FAN_ACCESS, "read"),
    (FAN_OPEN, "open"),
)


def parse_fd_events(buf: bytes) -> list[tuple[int, int, int]]:
    """(mask, fd, pid) of each metadata record in a buffer read from an fd-mode group."""
    out = []
    off = 0
    while off + _META.size <= len(buf):
        length, _v, _r, _ml, mask, fd, pid = _META.unpack_from(buf, off)
        if length < _META.size:
            break
        out.append((mask, fd, pid))
        off += length
    return out


def parse_fid_events(buf: bytes) -> list[tuple[int, int, bytes, str]]:
    """(mask, pid, dir handle key, name) of each record of a ``FAN_REPORT_DFID_NAME`` group."""
    out = []
    off = 0
    while off + _META.size <= len(buf):
        length, _v, _r, mlen, mask, _fd, pid = _META.unpack_from(buf, off)
        if length < _META.size:
            break
        info = off + mlen
        end = min(off + length, len(buf))
        while info + 4 <= end:
            itype, _pad, ilen = struct.unpack_from("=BBH", buf, info)
            if ilen == 0 or info + ilen > end:
                break
            if itype == FAN_EVENT_INFO_TYPE_DFID_NAME and ilen >= 20:
                hbytes, htype = struct.unpack_from("=Ii", buf, info + 12)
                hstart = info + 20
                if hstart + hbytes > info + ilen:
                    break
                key = struct.pack("=i", htype) + buf[hstart : hstart + hbytes]
                raw = buf[hstart + hbytes : info + ilen]
                name = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                out.append((mask, pid, key, name))
            info += ilen
        off += length
    return out


class _FileHandle(ctypes.Structure):
    _fields_ = [
        ("handle_bytes", ctypes.c_uint),
        ("handle_type", ctypes.c_int),
        ("f_handle", ctypes.c_ubyte * 128),
    ]


class FanotifySource:
    """fanotify-based file create / delete / access events (Linux, root)."""

    name = "linux-file"
    live = True
    lossless = False

    def __init__(
        self,
        *,
        host: Host,
        directories: list[str],
        files: list[str] = (),  # type: ignore[assignment]
        poll: float = 0.25,
    ) -> None:
        self.host = host
        self.directories = [d for d in directories if os.path.isdir(d)]
        self.files = list(files)
        self.poll = poll
        self._closed = threading.Event()
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self._libc.fanotify_mark.argtypes = [
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint64,
            ctypes.c_int,
            ctypes.c_char_p,
        ]
        self._dirs: dict[bytes, str] = {}
        self._recent_creates: OrderedDict[str, float] = OrderedDict()
        self.lost = 0  # queue overflows reported by the kernel
        self.budget = WaitBudget()

    # --- setup ------------------------------------------------------------------------------

    def _init(self, flags: int) -> int:
        fd = int(self._libc.fanotify_init(flags | FAN_CLOEXEC | FAN_NONBLOCK, os.O_RDONLY))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return fd

    def _mark(self, fd: int, mask: int, path: str) -> bool:
        rc = self._libc.fanotify_mark(fd, FAN_MARK_ADD, mask, AT_FDCWD, path.encode())
        if rc < 0:
            err = ctypes.get_errno()
            logger.warning("fanotify_mark(%s) failed: %s", path, os.strerror(err))
            return False
        return True

    def _handle_key(self, path: str) -> bytes | None:
        handle = _FileHandle()
        handle.handle_bytes = 128
        mount_id = ctypes.c_int()
        rc = self._libc.name_to_handle_at(
            AT_FDCWD, path.encode(), ctypes.byref(handle), ctypes.byref(mount_id), 0
        )
        if rc < 0:
            return None
        return struct.pack("=i", handle.handle_type) + bytes(handle.f_handle[: handle.handle_bytes])

    def _setup(self) -> tuple[int | None, int | None]:
        fid_fd: int | None = None
        fd_fd: int | None = None
        try:
            fid_fd = self._init(FAN_CLASS_NOTIF | FAN_REPORT_DIR_FID | FAN_REPORT_NAME)
            for d in self.directories:
                key = self._handle_key(d)
                if key and self._mark(fid_fd, FAN_CREATE | FAN_DELETE, d):
                    self._dirs[key] = d
        except OSError as ex:
            logger.warning("fanotify directory events unavailable (create/delete): %s", ex)
            fid_fd = None
        try:
            fd_fd = self._init(FAN_CLASS_NOTIF)
            for d in self.directories:
                self._mark(fd_fd, FAN_CLOSE_WRITE | FAN_EVENT_ON_CHILD, d)
            for f in self.files:
                self._mark(fd_fd, FAN_OPEN | FAN_ACCESS | FAN_MODIFY | FAN_CLOSE_WRITE, f)
        except OSError as ex:
            logger.warning("fanotify file events unavailable: %s", ex)
            fd_fd = None
        if fid_fd is None and fd_fd is None:
            raise SourceError("fanotify is not available on this kernel / privilege level")
        return fid_fd, fd_fd

    # --- loop -------------------------------------------------------------------------------

    def events(self) -> Iterator[dict[str, Any]]:
        fid_fd, fd_fd = self._setup()
        fds = [f for f in (fid_fd, fd_fd) if f is not None]
        try:
            while not self._closed.is_set():
                ready, _, _ = select.select(fds, [], [], self.poll)
                for fd in ready:
                    try:
                        buf = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if fd == fid_fd:
                        yield from self._from_fid(buf)
                    else:
                        yield from self._from_fd(buf)
        finally:
            for fd in fds:
                os.close(fd)

    def _from_fid(self, buf: bytes) -> Iterator[dict[str, Any]]:
        for mask, pid, key, name in parse_fid_events(buf):
            if mask & FAN_ONDIR or pid == self.host.agent_pid:
                continue
            directory = self._dirs.get(key)
            if directory is None:
                continue
            path = os.path.join(directory, name)
            if mask & FAN_CREATE:
                if self._first_file_event(path):
                    yield self._render(11, pid, path, "create")
            elif mask & FAN_DELETE:
                yield self._render(23, pid, path, "delete")

    def _from_fd(self, buf: bytes) -> Iterator[dict[str, Any]]:
        for mask, fd, pid in parse_fd_events(buf):
            if fd < 0:
                self.lost += 1
                logger.warning("fanotify queue overflow: file events lost")
                continue
            try:
                path = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                path = ""
            finally:
                os.close(fd)
            if not path or path.endswith(" (deleted)") or pid == self.host.agent_pid:
                continue
            if path in self.files:
                op = next((n for bit, n in _OPS if mask & bit), "open")
                yield self._render(FILE_ACCESS_EID, pid, path, op)
            elif mask & FAN_CLOSE_WRITE and self._first_file_event(path):
                yield self._render(11, pid, path, "close_write")

    def _first_file_event(self, path: str) -> bool:
        """One EventID 11 per path per 2 s: the create (directory group) and the close-write
        (fd group) of one new file arrive through two queues, in either order."""
        now = time.monotonic()
        last = self._recent_creates.get(path)
        self._recent_creates[path] = now
        self._recent_creates.move_to_end(path)
        while len(self._recent_creates) > 4096:
            self._recent_creates.popitem(last=False)
        return last is None or now - last >= 2.0

    def _render(self, eid: int, pid: int, path: str, operation: str) -> dict[str, Any]:
        host = self.host
        ts = host.clock()
        info = host.pids.get(pid) if pid > 0 else None
        if pid > 0 and (info is None or not info.complete):
            info = host.pids.wait_for(pid, self.budget.take(0.02)) or info
        data: dict[str, Any] = {
            "RuleName": "-",
            "UtcTime": sysmon_time(ts),
            "ProcessGuid": info.guid if info else "{00000000-0000-0000-0000-000000000000}",
            "ProcessId": str(pid),
            "Image": info.image if info else "-",
            "TargetFilename": path,
            "User": info.user if info else "-",
        }
        if eid == 11:
            data["CreationUtcTime"] = data["UtcTime"]
        elif eid == 23:
            data.update({"Hashes": "-", "IsExecutable": "false", "Archived": "false"})
        else:
            data["Operation"] = operation
        return make_event(
            channel=LINUX_CHANNEL,
            provider=LINUX_PROVIDER,
            provider_guid=LINUX_PROVIDER_GUID,
            event_id=eid,
            data=data,
            computer=host.hostname,
            ts=ts,
            pid=host.agent_pid,
            task_name="File accessed (heron)" if eid == FILE_ACCESS_EID else None,
        )

    def close(self) -> None:
        self._closed.set()
