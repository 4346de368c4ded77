"""The ``linux-ebpf`` source: kernel records → Sysmon-for-Linux events (and Heron extensions).

Every record carries the acting process's (pid, start time, exec count) read in the kernel, so
every event type computes the same ProcessGuid — ``process_guid(boot id, pid, start ticks ·
1000 + exec count)``, the formula of the /proc sources, which keeps processes seeded from /proc
at start consistent. A forked child shares its GUID with the program it execs (one Windows-style
process per fork+exec); a re-exec gets a new GUID.

Forks are not events by themselves: a child that never execs is announced (Heron EventID 103,
``ProcessFork``) only when something refers to it — its own event or a child's exec — so that
the tracker can resolve ancestry without /proc and without doubling the event rate.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from agent.render import (
    LINUX_CHANNEL,
    LINUX_PROVIDER,
    LINUX_PROVIDER_GUID,
    make_event,
    process_guid,
    sysmon_time,
)
from agent.sources.ebpf.dns import parse_message, sysmon_results
from agent.sources.ebpf.events import (
    EID,
    TASKS,
    ZERO_GUID,
    access_data,
    bind_fields,
    bpf_fields,
    connection_fields,
    cred_fields,
    exit_code,
    file_fields,
    module_fields,
    stdio_kinds,
)
from agent.sources.ebpf.records import EV, F_ARGS_TRUNC, F_EXE_DELETED, Record, decode
from agent.sources.ebpf.sensor import PROGRAMS, Sensor
from agent.sources.procconn import process_create_data
from agent.sources.procfs import ProcInfo, user_name

if TYPE_CHECKING:
    from agent.host import Host

__all__ = ["EbpfSource"]

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=16384)
def _cached_guid(boot_id: str, pid: int, start: int) -> str:
    """Performance: one process's GUID is needed by every record it produces (sha1 + uuid)."""
    return process_guid(boot_id, pid, start)


@dataclass(slots=True)
class _Proc:
    info: ProcInfo
    start: int  # kernel start_boottime ns
    announced: bool  # an EventID 1 or 103 was emitted (the tracker has it)


class EbpfSource:
    """Live process, network, DNS, file and privilege events from the eBPF sensor."""

    name = "linux-ebpf"
    live = True
    lossless = False
    COALESCE = 0.01  # seconds records may wait in the ring buffer to be read in one batch

    def __init__(
        self,
        *,
        host: Host,
        sensor: Sensor,
        prefixes: list[str],
        poll_ms: int = 100,
        max_procs: int = 65536,
    ) -> None:
        self.host = host
        self.sensor = sensor
        self.prefixes = list(prefixes)
        self.poll_ms = poll_ms
        self.max_procs = max_procs
        self._closed = threading.Event()
        self._tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        self._procs: dict[int, _Proc] = {}
        # Performance: fork records are kept raw until something needs the child (most children
        # exec at once, which replaces them); materialised by _info/_announce
        self._forks: dict[int, Record] = {}
        self._exited: OrderedDict[int, _Proc] = OrderedDict()
        self._batch: list[bytes] = []
        self._out: deque[dict[str, Any]] = deque()
        self._dns_names: OrderedDict[str, str] = OrderedDict()
        self._dns_pending: OrderedDict[tuple[int, int], tuple[float, Record, str, int]] = (
            OrderedDict()
        )
        self._boot_offset = 0.0
        self._offset_at = 0.0
        self.decode_errors = 0
        self.degraded = 0  # exec records with truncated arguments or without an image path
        self.records = 0

    # --- counters -----------------------------------------------------------------------------

    @property
    def lost(self) -> int:
        return sum(self.sensor.losses().values()) + self.decode_errors

    def sensor_status(self) -> dict[str, Any]:
        return {
            "mode": "ebpf",
            "losses": self.sensor.losses(),
            "records": self.records,
            "degraded": self.degraded,
            "decode_errors": self.decode_errors,
            "programs": list(self.sensor.obj.attached),
            "failed": dict(self.sensor.obj.failed),
            "processes": len(self._procs),
        }

    # --- loop ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Configure and attach the programs (idempotent); ``EbpfUnavailable`` if none attach.

        The factory calls it when the agent is built, so an attach failure still falls back;
        records produced before ``events()`` runs wait in the ring buffer.
        """
        if self.sensor.obj.attached:
            return
        self.sensor.configure(agent_pid=self.host.agent_pid, prefixes=self.prefixes)
        self.sensor.attach([p for p in PROGRAMS if p != "sys_enter" or self.prefixes])

    def events(self) -> Iterator[dict[str, Any]]:
        self.start()
        ring = self.sensor.ring(self._batch.append)
        last_sweep = time.monotonic()
        try:
            while not self._closed.is_set():
                n = ring.poll(self.poll_ms)
                if n < 0 and n != -4:  # -EINTR is harmless
                    logger.warning("ring_buffer__poll failed: %s", os.strerror(-n))
                    self._closed.wait(0.1)
                elif 0 < n < 256:
                    # Performance: the kernel wakes us for nearly every record at high rates;
                    # letting records gather for a few ms turns thousands of wake-ups into ~100
                    time.sleep(self.COALESCE)
                    n += max(0, ring.poll(0))
                batch, self._batch[:] = list(self._batch), []
                for raw in batch:
                    self.records += 1
                    try:
                        rec = decode(raw)
                    except ValueError:
                        self.decode_errors += 1
                        continue
                    self._handle(rec)
                now = time.monotonic()
                if now - last_sweep >= 1.0:
                    last_sweep = now
                    self._sweep_dns(now)
                while self._out:
                    yield self._out.popleft()
        finally:
            self.sensor.close()

    def close(self) -> None:
        self._closed.set()

    # --- helpers ------------------------------------------------------------------------------

    def _wall(self, ts_ns: int) -> float:
        now = time.monotonic()
        if now - self._offset_at > 30.0:
            self._boot_offset = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
            self._offset_at = now
        return self._boot_offset + ts_ns / 1e9

    def _guid(self, pid: int, start_ns: int, seq: int) -> str:
        return _cached_guid(self.host.boot_id, pid, (start_ns // self._tick_ns) * 1000 + seq)

    def _info(self, pid: int, start: int, seq: int, comm: str = "") -> ProcInfo:
        """What we know of (pid, start, seq): our table, else /proc (older processes)."""
        fork = self._forks.get(pid)
        if fork is not None and fork.start == start:
            self._materialize(fork)
        p = self._procs.get(pid) or self._exited.get(pid)
        guid = self._guid(pid, start, seq)
        if p is not None and p.info.guid == guid:
            return p.info
        if pid > 0:
            known = self.host.pids.get(pid)
            if known is not None and known.start_ticks == start // self._tick_ns:
                info = replace(known, guid=guid, exec_seq=seq)
                self._remember(pid, _Proc(info, start, announced=True))
                return info
        return ProcInfo(
            pid,
            0,
            comm or "-",
            comm or "-",
            "-",
            -1,
            "-",
            start // self._tick_ns,
            comm,
            guid=guid,
            exec_seq=seq,
            complete=False,
        )

    def _remember(self, pid: int, proc: _Proc) -> None:
        self._procs[pid] = proc
        self._exited.pop(pid, None)
        if len(self._procs) > self.max_procs:  # exits lost: forget the oldest entries
            for old in list(self._procs)[: self.max_procs // 8]:
                del self._procs[old]

    def _announce(self, pid: int, depth: int = 0) -> None:
        """Emit the ProcessFork of a never-announced forked process (and of its parents)."""
        fork = self._forks.get(pid)
        if fork is not None:
            self._materialize(fork)
        p = self._procs.get(pid)
        if p is None or p.announced or depth > 16:
            return
        p.announced = True
        info = p.info
        parent = self._procs.get(info.ppid)
        if parent is not None and not parent.announced:
            self._announce(info.ppid, depth + 1)
        pinfo = parent.info if parent is not None else None
        data = process_create_data(info, pinfo, self._wall_now(), "")
        if pinfo is None:
            data["ParentProcessGuid"] = ZERO_GUID
        self._emit(EID.PROCESS_FORK, data, self._wall_now())

    def _wall_now(self) -> float:
        return time.time()

    def _actor(self, rec: Record) -> ProcInfo:
        info = self._info(rec.pid, rec.start, rec.seq, rec.comm)
        self._announce(rec.pid)
        return info

    def _emit(self, eid: int, data: dict[str, Any], ts: float) -> None:
        host = self.host
        self._out.append(
            make_event(
                channel=LINUX_CHANNEL,
                provider=LINUX_PROVIDER,
                provider_guid=LINUX_PROVIDER_GUID,
                event_id=eid,
                data=data,
                computer=host.hostname,
                ts=ts,
                pid=host.agent_pid,
                task_name=TASKS.get(eid),
            )
        )

    def _base(self, info: ProcInfo, ts: float) -> dict[str, Any]:
        return {
            "RuleName": "-",
            "UtcTime": sysmon_time(ts),
            "ProcessGuid": info.guid,
            "ProcessId": str(info.pid),
            "Image": info.image,
            "User": info.user if info.user else "-",
        }

    # --- records ------------------------------------------------------------------------------

    def _handle(self, rec: Record) -> None:
        t = rec.type
        if t == EV.EXEC:
            self._exec(rec)
        elif t == EV.FORK:
            self._fork(rec)
        elif t == EV.EXIT:
            self._exit(rec)
        elif t in (EV.CONNECT, EV.ACCEPT, EV.UDP_SEND):
            self._connection(rec)
        elif t == EV.BIND:
            self._bind(rec)
        elif t == EV.DNS_SEND:
            self._dns_send(rec)
        elif t == EV.DNS_RECV:
            self._dns_recv(rec)
        elif EV.FILE_CREATE <= t <= EV.FILE_CHOWN:
            self._file(rec)
        elif t == EV.PTRACE:
            self._ptrace(rec)
        elif t == EV.MODULE:
            self._module(rec)
        elif t == EV.BPF:
            self._bpf(rec)
        elif t == EV.CRED:
            self._cred(rec)
        else:
            self.decode_errors += 1

    def _exec(self, rec: Record) -> None:
        self._forks.pop(rec.pid, None)
        ts = self._wall(rec.ts)
        image = rec.text(0) or rec.text(3) or rec.comm
        if rec.flags & F_EXE_DELETED:
            image += " (deleted)"
        args = [a.decode("utf-8", "surrogateescape") for a in rec.fields[2].split(b"\0") if a]
        if rec.flags & F_ARGS_TRUNC or not rec.fields[0]:
            self.degraded += 1
        info = ProcInfo(
            rec.pid,
            rec.ppid,
            image,
            " ".join(args) or rec.comm,
            rec.text(1) or "-",
            rec.uid,
            user_name(rec.uid),
            rec.start // self._tick_ns,
            rec.comm,
            guid=self._guid(rec.pid, rec.start, rec.seq),
            exec_seq=rec.seq,
        )
        parent = self._info(rec.ppid, rec.pstart, rec.pseq) if rec.ppid else None
        if parent is not None:
            self._announce(rec.ppid)
        self._remember(rec.pid, _Proc(info, rec.start, announced=True))
        if rec.seq:  # a re-exec: /proc alone would give the GUID of the first program
            self.host.pids.register(info)
        data = process_create_data(info, parent, ts, "")
        data["ParentProcessGuid"] = (
            self._guid(rec.ppid, rec.pstart, rec.pseq) if rec.ppid else ZERO_GUID
        )
        data["Stdio"] = stdio_kinds(rec.aux[0])  # Heron: what stdin, stdout, stderr are
        if rec.euid != rec.uid:
            data["IntegrityLevel"] = "High" if rec.euid == 0 else data["IntegrityLevel"]
        self._emit(EID.PROCESS_CREATE, data, ts)

    def _fork(self, rec: Record) -> None:
        self._forks[rec.pid] = rec
        if len(self._forks) > self.max_procs:  # exits lost: forget the oldest
            for old in list(self._forks)[: self.max_procs // 8]:
                del self._forks[old]

    def _materialize(self, rec: Record) -> None:
        """The child of a fork record inherits its parent's image and command line."""
        del self._forks[rec.pid]
        parent = self._info(rec.ppid, rec.pstart, rec.pseq)
        guid = self._guid(rec.pid, rec.start, rec.seq)
        info = replace(
            parent,
            pid=rec.pid,
            ppid=rec.ppid,
            start_ticks=rec.start // self._tick_ns,
            guid=guid,
            exec_seq=rec.seq,
            uid=rec.uid,
            user=user_name(rec.uid),
        )
        # not registered in host.pids: a /proc read gives the same GUID (exec count 0)
        self._remember(rec.pid, _Proc(info, rec.start, announced=False))

    def _exit(self, rec: Record) -> None:
        fork = self._forks.get(rec.pid)
        if fork is not None and fork.start == rec.start:
            del self._forks[rec.pid]  # a fork that never did anything visible
            self.host.pids.on_exit(rec.pid)
            return
        p = self._procs.get(rec.pid)
        guid = self._guid(rec.pid, rec.start, rec.seq)
        if p is not None and p.info.guid == guid:
            del self._procs[rec.pid]
            self._exited[rec.pid] = p
            while len(self._exited) > 4096:
                self._exited.popitem(last=False)
            self.host.pids.on_exit(rec.pid)
            if not p.announced:
                return  # a fork that never did anything visible
            info = p.info
        else:
            info = self._info(rec.pid, rec.start, rec.seq, rec.comm)
            self.host.pids.on_exit(rec.pid)
        ts = self._wall(rec.ts)
        data = self._base(info, ts)
        data["ExitCode"] = exit_code(rec)
        self._emit(EID.PROCESS_TERMINATE, data, ts)

    def _connection(self, rec: Record) -> None:
        if rec.net[0] not in (2, 10):
            return
        ts = self._wall(rec.ts)
        data = self._base(self._actor(rec), ts)
        data.update(connection_fields(rec, self._dns_names))
        self._emit(EID.NETWORK_CONNECT, data, ts)

    def _bind(self, rec: Record) -> None:
        ts = self._wall(rec.ts)
        data = self._base(self._actor(rec), ts)
        data.update(bind_fields(rec))
        self._emit(EID.SOCKET_BIND, data, ts)

    def _dns_send(self, rec: Record) -> None:
        msg = parse_message(rec.fields[0], tcp=rec.net[1] == 6)
        if msg is None or msg.response:
            return
        family, _proto, _lport, _rport, _laddr, raddr = rec.net
        key = (rec.pid, msg.id)
        self._dns_pending[key] = (time.monotonic(), rec, msg.qname, msg.qtype)
        while len(self._dns_pending) > 4096:
            _, (_, old, qname, _qt) = self._dns_pending.popitem(last=False)
            self._dns_event(old, qname, "1460", "-")

    def _dns_recv(self, rec: Record) -> None:
        msg = parse_message(rec.fields[0], tcp=rec.net[1] == 6)
        if msg is None or not msg.response:
            return
        pending = self._dns_pending.pop((rec.pid, msg.id), None)
        qname = pending[2] if pending else msg.qname
        for rtype, value in msg.answers:
            if rtype in (1, 28):
                self._dns_names[value] = qname
                self._dns_names.move_to_end(value)
        while len(self._dns_names) > 8192:
            self._dns_names.popitem(last=False)
        self._dns_event(rec, qname, str(msg.rcode), sysmon_results(msg.answers))

    def _dns_event(self, rec: Record, qname: str, status: str, results: str) -> None:
        ts = self._wall(rec.ts)
        data = self._base(self._actor(rec), ts)
        data.update({"QueryName": qname, "QueryStatus": status, "QueryResults": results})
        self._emit(EID.DNS_QUERY, data, ts)

    def _sweep_dns(self, now: float) -> None:
        """Queries unanswered for 5 s are reported with status 1460 (ERROR_TIMEOUT, as Sysmon)."""
        while self._dns_pending:
            key, (when, rec, qname, _qt) = next(iter(self._dns_pending.items()))
            if now - when < 5.0:
                break
            del self._dns_pending[key]
            self._dns_event(rec, qname, "1460", "-")

    def _file(self, rec: Record) -> None:
        ts = self._wall(rec.ts)
        data = self._base(self._actor(rec), ts)
        eid, fields = file_fields(rec, data["UtcTime"])
        data.update(fields)
        self._emit(eid, data, ts)

    def _ptrace(self, rec: Record) -> None:
        ts = self._wall(rec.ts)
        src = self._actor(rec)
        target_pid = rec.aux[0] & 0xFFFFFFFF
        p = self._procs.get(target_pid)
        target = p.info if p is not None else self.host.pids.get(target_pid)
        self._emit(EID.PROCESS_ACCESS, access_data(rec, src, target, ts), ts)

    def _module(self, rec: Record) -> None:
        ts = self._wall(rec.ts)
        data = self._base(self._actor(rec), ts)
        data.update(module_fields(rec))
        self._emit(EID.KERNEL_MODULE_LOAD, data, ts)

    def _bpf(self, rec: Record) -> None:
        ts = self._wall(rec.ts)
        data = self._base(self._actor(rec), ts)
        data.update(bpf_fields(rec))
        self._emit(EID.BPF_PROGRAM_LOAD, data, ts)

    def _cred(self, rec: Record) -> None:
        ts = self._wall(rec.ts)
        info = self._actor(rec)
        data = self._base(info, ts)
        data.update(cred_fields(rec, info))
        if info.uid != rec.uid:
            new = replace(info, uid=rec.uid, user=user_name(rec.uid))
            p = self._procs.get(rec.pid)
            if p is not None and p.info.guid == info.guid:
                p.info = new
        self._emit(EID.CREDENTIAL_CHANGE, data, ts)
