"""Loading the sensor's eBPF object (heron.bpf.o) and reading its ring buffer and counters.

``load_sensor`` either returns a loaded, configured ``Sensor`` or raises ``EbpfUnavailable``
whose message is the reason the agent falls back to the /proc sources (shown in the log, in
``status`` and in the system information sent to the manager).
"""

from __future__ import annotations

import os
import platform
import struct
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from agent.errors import SourceError
from agent.sources.ebpf.libbpf import BpfError, BpfObject, RingBuffer
from agent.sources.ebpf.records import EV, EV_NAMES

__all__ = ["OBJECT_PATH", "PROGRAMS", "EbpfUnavailable", "Sensor", "load_sensor"]

OBJECT_PATH = Path(__file__).with_name("heron.bpf.o")
PROGRAMS = ["on_fork", "on_exec", "on_exit", "sys_enter", "sys_exit"]
_FILE_PROGRAMS = {"sys_enter"}  # only needed for close-write events
_PREFIX_KEY = struct.Struct("<I256s")


class EbpfUnavailable(SourceError):
    """eBPF cannot run here; the message is the reason (for the fallback)."""


class Sensor:
    """The loaded object: configuration maps, attachment, ring buffer and loss counters."""

    def __init__(self, obj: BpfObject) -> None:
        self.obj = obj
        self.ncpus = int(obj.lib.libbpf_num_possible_cpus())
        self._rb: RingBuffer | None = None
        self._losses: dict[str, int] = {}  # last counts read (kept after close)
        self._lock = threading.Lock()  # status thread vs the source thread closing

    def configure(self, *, agent_pid: int, prefixes: list[str]) -> None:
        """Own pid (its events are dropped in the kernel) and the file path prefixes."""
        for p in prefixes:
            raw = p.encode()[:256]
            self.obj.update("prefixes", _PREFIX_KEY.pack(len(raw) * 8, raw), b"\x01")
        self.obj.update(
            "hconfig", struct.pack("<I", 0), struct.pack("<II", agent_pid, 1 if prefixes else 0)
        )

    def attach(self, names: list[str] | None = None) -> None:
        self.obj.attach(list(names or PROGRAMS))
        if not any(n in self.obj.attached for n in ("on_exec", "sys_exit")):
            raise EbpfUnavailable(
                "eBPF programs could not be attached: " + "; ".join(self.obj.failed.values())
            )

    def ring(self, sink: Callable[[bytes], None]) -> RingBuffer:
        if self._rb is None:
            self._rb = RingBuffer(self.obj.lib, self.obj.map_fd("rb"), sink)
        return self._rb

    def losses(self) -> dict[str, int]:
        """Ring-buffer reservation failures counted in the kernel, per record type."""
        with self._lock:
            return self._read_losses()

    def _read_losses(self) -> dict[str, int]:
        if self.obj.closed:
            return dict(self._losses)
        out: dict[str, int] = {}
        for t in range(1, EV.MAX):
            raw = self.obj.lookup("losses", struct.pack("<I", t), 8 * self.ncpus)
            n = sum(struct.unpack(f"<{self.ncpus}Q", raw)) if raw else 0
            if n:
                out[EV_NAMES[t]] = n
        self._losses = out
        return dict(out)

    def close(self) -> None:
        with self._lock:
            if self.obj.closed:
                return
            self._read_losses()  # the final counts stay readable for the last status
            if self._rb is not None:
                self._rb.close()
                self._rb = None
            self.obj.close()


def _why_not() -> str:
    if not sys.platform.startswith("linux"):
        return "not Linux"
    if platform.machine() != "x86_64":
        return f"unsupported architecture {platform.machine()} (syscall numbers are x86_64)"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "the kernel has no BTF (/sys/kernel/btf/vmlinux missing)"
    if not OBJECT_PATH.is_file():
        return f"{OBJECT_PATH.name} was not built (make ebpf needs clang, libbpf-dev, bpftool)"
    return ""


def load_sensor(*, ringbuf_mb: int = 8, files: bool = True, ringbuf_bytes: int = 0) -> Sensor:
    """Load heron.bpf.o into the kernel (not yet attached); ``EbpfUnavailable`` with the reason.

    ``ringbuf_bytes`` (tests) overrides the size: a power of two ≥ one page.
    """
    reason = _why_not()
    if reason:
        raise EbpfUnavailable(reason)
    wanted = ringbuf_bytes or max(1, ringbuf_mb) * 1024 * 1024
    size = 1 << max(12, (wanted - 1).bit_length())
    try:
        obj = BpfObject(
            str(OBJECT_PATH),
            max_entries={"rb": size},
            disabled=() if files else tuple(_FILE_PROGRAMS),
        )
    except BpfError as ex:
        hint = "" if os.geteuid() == 0 else " (needs root: CAP_BPF + CAP_PERFMON)"
        raise EbpfUnavailable(f"{ex}{hint}") from ex
    return Sensor(obj)
