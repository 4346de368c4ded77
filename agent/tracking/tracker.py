"""Process tracking (WHIDS ``ptrack.go``): one ``ProcessTrack`` per process GUID.

The tracker owns the process tree, per-process statistics (connections per IP, DNS answers, file
counters, last files), modules, drivers, threat scores, the command-line blacklist and the
per-GUID action counters. Memory is bounded: terminated tracks are freed ``terminated_ttl``
seconds after termination once no live child refers to them, and the total number of tracks is
capped (oldest terminated first). It is used from the pipeline thread; readers (reports,
commands) take ``snapshot`` copies under the lock.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DriverInfo", "ModuleInfo", "ProcessTrack", "Tracker"]

LAST_FILES = 50
MAX_IPS = 64
MAX_QNAMES = 32


def _now_iso(ts: float) -> str:
    from agent.render import rfc3339_nano

    return rfc3339_nano(ts)


@dataclass(slots=True)
class ModuleInfo:
    """A loaded module (Sysmon EID 7) — WHIDS ``ModuleInfo`` keys on the wire."""

    image: str
    hashes: str = ""
    signature: str = ""
    signature_status: str = ""
    signed: str = ""
    load_count: int = 0
    first_load: str = ""
    last_load: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "hashes": self.hashes,
            "signature": self.signature,
            "signature-status": self.signature_status,
            "signed": self.signed,
            "load-count": self.load_count,
            "first-load": self.first_load,
            "last-load": self.last_load,
        }


@dataclass(slots=True)
class DriverInfo:
    """A loaded driver (Sysmon EID 6)."""

    image: str
    hashes: str = ""
    signed: str = ""
    signature: str = ""
    signature_status: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "hashes": self.hashes,
            "signed": self.signed,
            "signature": self.signature,
            "signature-status": self.signature_status,
        }


@dataclass(slots=True)
class ProcessTrack:
    """Everything known about one process (mutable, owned by the tracker)."""

    guid: str
    pid: int
    image: str = "?"
    command_line: str = "?"
    cwd: str = "?"
    user: str = "?"
    integrity: str = "?"
    parent_guid: str = "?"
    parent_image: str = "?"
    parent_command_line: str = "?"
    hashes: dict[str, str] = field(default_factory=dict)
    hashes_text: str = ""
    services: str = "N/A"
    signed: str = "?"
    signature: str = "?"
    signature_status: str = "?"
    ancestors: list[str] = field(default_factory=list)
    modules: OrderedDict[str, ModuleInfo] = field(default_factory=OrderedDict)
    children: set[str] = field(default_factory=set)
    child_count: int = 0
    create_count: int = 0
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    dns: dict[str, dict[str, int]] = field(default_factory=dict)
    last_files: deque[str] = field(default_factory=lambda: deque(maxlen=LAST_FILES))
    file_create_count: int = 0
    file_create_by_ext: dict[str, int] = field(default_factory=dict)
    file_delete_count: int = 0
    file_delete_by_ext: dict[str, int] = field(default_factory=dict)
    score: int = 0
    score_signatures: dict[str, int] = field(default_factory=dict)
    action_count: int = 0
    memory_dumped: bool = False
    start: float = 0.0
    terminated: bool = False
    time_terminated: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """WHIDS ``ProcessTrack`` JSON (hyphenated keys)."""
        files = list(self.last_files)
        return {
            "image": self.image,
            "parent-image": self.parent_image,
            "pid": self.pid,
            "command-line": self.command_line,
            "parent-command-line": self.parent_command_line,
            "cwd": self.cwd,
            "process-guid": self.guid,
            "parent-process-guid": self.parent_guid,
            "user": self.user,
            "integrity-lvl": self.integrity,
            "services": self.services,
            "hashes": dict(self.hashes),
            "signature": self.signature,
            "signature-status": self.signature_status,
            "signed": self.signed,
            "ancestors": list(self.ancestors),
            "modules": [m.to_dict() for m in self.modules.values()],
            "memory-dumped": self.memory_dumped,
            "dump-count": self.action_count,
            "child-count": self.child_count,
            "statistics": {
                "create-process-count": self.create_count,
                "connections": {
                    ip: dict(c, ports=dict(c["ports"]), resolved=dict(c["resolved"]))
                    for ip, c in self.connections.items()
                },
                "files": {
                    "last-accessed": files + [None] * (LAST_FILES - len(files)),
                    "file-create-count": self.file_create_count,
                    "file-create-count-by-ext": dict(self.file_create_by_ext),
                    "file-delete-count": self.file_delete_count,
                    "file-delete-count-by-ext": dict(self.file_delete_by_ext),
                },
            },
            "threat-score": {"signatures": dict(self.score_signatures), "score": self.score},
            "terminated": self.terminated,
            "time-terminated": _now_iso(self.time_terminated) if self.terminated else None,
        }


class Tracker:
    """Bounded process table keyed by GUID, with a pid index for live processes."""

    def __init__(
        self,
        *,
        max_tracks: int = 16384,
        terminated_ttl: float = 10.0,
        modules_per_process: int = 256,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_tracks = max_tracks
        self.terminated_ttl = terminated_ttl
        self.modules_per_process = modules_per_process
        self._clock = clock
        self._tracks: OrderedDict[str, ProcessTrack] = OrderedDict()
        self._by_pid: dict[int, str] = {}
        self._terminated: deque[tuple[float, str]] = deque()
        self.drivers: OrderedDict[str, DriverInfo] = OrderedDict()
        self.blacklist: set[str] = set()
        self.lock = threading.RLock()
        self.freed = 0

    # --- lookup -----------------------------------------------------------------------------

    def get(self, guid: str) -> ProcessTrack | None:
        return self._tracks.get(_norm(guid))

    def by_pid(self, pid: int) -> ProcessTrack | None:
        guid = self._by_pid.get(pid)
        return self._tracks.get(guid) if guid else None

    def __len__(self) -> int:
        return len(self._tracks)

    def __contains__(self, guid: object) -> bool:
        return isinstance(guid, str) and _norm(guid) in self._tracks

    # --- mutation ---------------------------------------------------------------------------

    def create(self, guid: str, pid: int, **attrs: Any) -> ProcessTrack:
        """Start (or refresh) the track of a new process; links it to its parent."""
        with self.lock:
            key = _norm(guid)
            track = self._tracks.get(key)
            if track is None:
                track = ProcessTrack(guid=guid, pid=pid, start=self._clock())
                self._tracks[key] = track
            for name, value in attrs.items():
                setattr(track, name, value)
            self._by_pid[pid] = key
            parent = self.get(track.parent_guid) if track.parent_guid not in ("?", "") else None
            if parent is not None:
                parent.children.add(key)
                parent.child_count += 1
                parent.create_count += 1
                track.ancestors = parent.ancestors + [parent.image]
            self._enforce_cap()
            return track

    def terminate(self, guid: str) -> ProcessTrack | None:
        with self.lock:
            track = self.get(guid)
            if track is None or track.terminated:
                return track
            track.terminated = True
            track.time_terminated = self._clock()
            if self._by_pid.get(track.pid) == _norm(guid):
                del self._by_pid[track.pid]
            self._terminated.append((track.time_terminated, _norm(guid)))
            return track

    def free_expired(self) -> int:
        """Free terminated tracks older than the TTL that have no live child; returns count."""
        freed = 0
        with self.lock:
            deadline = self._clock() - self.terminated_ttl
            keep: deque[tuple[float, str]] = deque()
            while self._terminated and self._terminated[0][0] <= deadline:
                when, key = self._terminated.popleft()
                track = self._tracks.get(key)
                if track is None:
                    continue
                live_children = any(
                    (c := self._tracks.get(k)) is not None and not c.terminated
                    for k in track.children
                )
                if live_children:
                    keep.append((when, key))
                    continue
                self._drop(key)
                freed += 1
            self._terminated.extendleft(reversed(keep))
        self.freed += freed
        return freed

    def _drop(self, key: str) -> None:
        track = self._tracks.pop(key, None)
        if track is None:
            return
        parent = self._tracks.get(_norm(track.parent_guid))
        if parent is not None:
            parent.children.discard(key)
        if self._by_pid.get(track.pid) == key:
            del self._by_pid[track.pid]

    def _enforce_cap(self) -> None:
        while len(self._tracks) > self.max_tracks:
            victim = next((k for _, k in self._terminated if k in self._tracks), None)
            if victim is None:
                victim = next(iter(self._tracks))
            self._drop(victim)
            self.freed += 1

    def trim(self, keep: int) -> None:
        """Memory self-limit: drop the oldest tracks until ``keep`` remain."""
        with self.lock:
            while len(self._tracks) > keep:
                self._drop(next(iter(self._tracks)))
                self.freed += 1

    def add_module(self, guid: str, module: ModuleInfo, ts: float) -> ModuleInfo | None:
        track = self.get(guid)
        if track is None:
            return None
        info = track.modules.get(module.image)
        if info is None:
            info = module
            info.first_load = _now_iso(ts)
            track.modules[module.image] = info
            while len(track.modules) > self.modules_per_process:
                track.modules.popitem(last=False)
        info.load_count += 1
        info.last_load = _now_iso(ts)
        return info

    def add_driver(self, driver: DriverInfo) -> None:
        self.drivers[driver.image] = driver
        while len(self.drivers) > 4096:
            self.drivers.popitem(last=False)

    def add_score(self, guid: str, signatures: list[str], criticality: int) -> None:
        """Post-hook (WHIDS hookUpdateGeneScore): add a detection to the process threat score."""
        with self.lock:
            self._add_score(guid, signatures, criticality)

    def _add_score(self, guid: str, signatures: list[str], criticality: int) -> None:
        track = self.get(guid)
        if track is None:
            return
        track.score += criticality
        for sig in signatures:
            track.score_signatures[sig] = track.score_signatures.get(sig, 0) + 1

    # --- views ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """guid → ProcessTrack JSON (WHIDS ``processes`` command / report)."""
        with self.lock:
            return {t.guid: t.to_dict() for t in self._tracks.values()}

    def modules(self) -> list[dict[str, Any]]:
        with self.lock:
            seen: dict[str, dict[str, Any]] = {}
            for track in self._tracks.values():
                for m in track.modules.values():
                    seen.setdefault(m.image, m.to_dict())
            return list(seen.values())

    def driver_list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [d.to_dict() for d in self.drivers.values()]

    def tree(self, guid: str) -> list[dict[str, Any]]:
        """The track of ``guid``, its ancestors (oldest first) and its descendants."""
        with self.lock:
            track = self.get(guid)
            if track is None:
                return []
            chain: list[ProcessTrack] = []
            cur: ProcessTrack | None = track
            while cur is not None and len(chain) < 64:
                chain.append(cur)
                cur = self.get(cur.parent_guid) if cur.parent_guid not in ("?", "") else None
            out = [t.to_dict() for t in reversed(chain)]
            stack = list(track.children)
            while stack and len(out) < 1024:
                child = self._tracks.get(stack.pop())
                if child is not None:
                    out.append(child.to_dict())
                    stack.extend(child.children)
            return out


def _norm(guid: str) -> str:
    return guid.strip("{}").upper()
