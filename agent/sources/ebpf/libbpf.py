"""Minimal ctypes binding of libbpf.so.1: load an object, attach programs, maps, ring buffer.

Only what the Linux sensor needs. Every call that can fail raises ``BpfError`` with the libbpf
message (captured through ``libbpf_set_print``) so the fallback reason is readable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from collections.abc import Callable

__all__ = ["BpfError", "BpfObject", "RingBuffer", "load_libbpf"]

logger = logging.getLogger(__name__)

_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_LIB: ctypes.CDLL | None = None
_LIB_LOCK = threading.Lock()
_MESSAGES: list[str] = []  # recent libbpf warnings (the reason of the last failure)
_PRINT_REF: object = None


class BpfError(OSError):
    """libbpf refused something; the message says what."""


def _on_print(level: int, fmt: bytes | None, args: int | None) -> int:
    libc = ctypes.CDLL(None)
    buf = ctypes.create_string_buffer(1024)
    libc.vsnprintf(buf, ctypes.c_size_t(len(buf)), fmt, ctypes.c_void_p(args))
    text = buf.value.decode("utf-8", "replace").rstrip()
    if level <= 1 and text:  # LIBBPF_WARN (0) and LIBBPF_INFO (1); DEBUG is dropped
        _MESSAGES.append(text)
        del _MESSAGES[:-20]
    return 0


def load_libbpf() -> ctypes.CDLL:
    """The libbpf.so.1 runtime (Debian package libbpf1); ``BpfError`` when missing."""
    global _LIB, _PRINT_REF
    with _LIB_LOCK:
        if _LIB is not None:
            return _LIB
        name = ctypes.util.find_library("bpf") or "libbpf.so.1"
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as ex:
            raise BpfError(f"libbpf.so.1 not found ({ex}); install libbpf1") from ex
        vp, cp, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        sigs: dict[str, tuple[list[object], object]] = {
            "bpf_object__open_file": ([cp, vp], vp),
            "bpf_object__load": ([vp], i),
            "bpf_object__close": ([vp], None),
            "bpf_object__find_map_by_name": ([vp, cp], vp),
            "bpf_object__find_program_by_name": ([vp, cp], vp),
            "bpf_program__set_autoload": ([vp, ctypes.c_bool], i),
            "bpf_program__attach": ([vp], vp),
            "bpf_link__destroy": ([vp], i),
            "bpf_map__fd": ([vp], i),
            "bpf_map__set_max_entries": ([vp, ctypes.c_uint32], i),
            "bpf_map_update_elem": ([i, vp, vp, ctypes.c_uint64], i),
            "bpf_map_lookup_elem": ([i, vp, vp], i),
            "bpf_map_delete_elem": ([i, vp], i),
            "ring_buffer__new": ([i, SAMPLE_FN, vp, vp], vp),
            "ring_buffer__poll": ([vp, i], i),
            "ring_buffer__free": ([vp], None),
            "libbpf_num_possible_cpus": ([], i),
            "libbpf_set_print": ([_PRINT_FN], vp),
        }
        for fn, (args, res) in sigs.items():
            try:
                f = getattr(lib, fn)
            except AttributeError as ex:  # libbpf 0.x: too old for ring buffers / this API
                raise BpfError(f"{name} lacks {fn}: libbpf >= 1.0 (libbpf1) needed") from ex
            f.argtypes = args
            f.restype = res
        _PRINT_REF = _PRINT_FN(_on_print)
        lib.libbpf_set_print(_PRINT_REF)
        _LIB = lib
        return lib


def _fail(what: str, err: int | None = None) -> BpfError:
    err = ctypes.get_errno() if err is None else err
    detail = "; ".join(m for m in _MESSAGES[-3:] if m)
    _MESSAGES.clear()
    text = f"{what}: {os.strerror(abs(err)) if err else 'failed'}"
    return BpfError(abs(err) or 0, text + (f" ({detail})" if detail else ""))


class BpfObject:
    """One loaded BPF object file and the links of its attached programs."""

    def __init__(
        self,
        path: str,
        *,
        max_entries: dict[str, int] | None = None,
        disabled: tuple[str, ...] = (),
    ) -> None:
        self.lib = load_libbpf()
        self.path = path
        self._links: list[int] = []
        self.attached: list[str] = []
        self.failed: dict[str, str] = {}
        obj = self.lib.bpf_object__open_file(path.encode(), None)
        if not obj:
            raise _fail(f"cannot open {path}")
        self._obj: int | None = obj
        try:
            for name, n in (max_entries or {}).items():
                m = self.lib.bpf_object__find_map_by_name(obj, name.encode())
                if not m or self.lib.bpf_map__set_max_entries(m, n) != 0:
                    raise _fail(f"map {name}: cannot resize")
            for name in disabled:
                prog = self.lib.bpf_object__find_program_by_name(obj, name.encode())
                if prog:
                    self.lib.bpf_program__set_autoload(prog, False)
            rc = self.lib.bpf_object__load(obj)
            if rc != 0:
                raise _fail("cannot load the eBPF programs", rc)
        except BaseException:
            self.close()
            raise

    @property
    def closed(self) -> bool:
        return not self._obj

    def _live(self) -> int:
        if not self._obj:
            raise BpfError("the BPF object is closed")
        return self._obj

    def attach(self, names: list[str]) -> None:
        """Attach the named programs; one that fails is recorded in ``failed`` (not fatal)."""
        for name in names:
            prog = self.lib.bpf_object__find_program_by_name(self._live(), name.encode())
            link = self.lib.bpf_program__attach(prog) if prog else None
            if not link:
                self.failed[name] = str(_fail(f"attach {name}"))
                continue
            self._links.append(link)
            self.attached.append(name)

    def map_fd(self, name: str) -> int:
        m = self.lib.bpf_object__find_map_by_name(self._live(), name.encode())
        fd = self.lib.bpf_map__fd(m) if m else -1
        if fd < 0:
            raise BpfError(f"no map named {name}")
        return int(fd)

    def update(self, name: str, key: bytes, value: bytes) -> None:
        k = ctypes.create_string_buffer(key, len(key))
        v = ctypes.create_string_buffer(value, len(value))
        if self.lib.bpf_map_update_elem(self.map_fd(name), k, v, 0) != 0:
            raise _fail(f"update of map {name}")

    def lookup(self, name: str, key: bytes, size: int) -> bytes | None:
        k = ctypes.create_string_buffer(key, len(key))
        v = ctypes.create_string_buffer(size)
        if self.lib.bpf_map_lookup_elem(self.map_fd(name), k, v) != 0:
            return None
        return v.raw

    def close(self) -> None:
        for link in self._links:
            self.lib.bpf_link__destroy(link)
        self._links.clear()
        if self._obj:
            self.lib.bpf_object__close(self._obj)
            self._obj = None


class RingBuffer:
    """A BPF ring buffer; ``poll`` hands every record (bytes) to ``sink``."""

    def __init__(self, lib: ctypes.CDLL, map_fd: int, sink: Callable[[bytes], None]) -> None:
        self.lib = lib

        def sample(_ctx: int | None, data: int | None, size: int) -> int:
            sink(ctypes.string_at(data, size))  # type: ignore[arg-type]
            return 0

        self._cb = SAMPLE_FN(sample)  # referenced for the ring buffer's life
        rb = lib.ring_buffer__new(map_fd, self._cb, None, None)
        if not rb:
            raise _fail("ring_buffer__new")
        self._rb: int | None = rb

    def poll(self, timeout_ms: int) -> int:
        """Wait up to ``timeout_ms`` for records; returns how many were consumed (< 0: error)."""
        if not self._rb:
            return -1
        return int(self.lib.ring_buffer__poll(self._rb, timeout_ms))

    def close(self) -> None:
        if self._rb:
            self.lib.ring_buffer__free(self._rb)
            self._rb = None
