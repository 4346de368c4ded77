"""Bound the resident pages of the mmapped index files in this process (Linux).

Tantivy reads its segments through ``mmap``. Every page a merge or a search touches stays
mapped, so it counts in the process's RSS until the file is unmapped: the merge of the eight
largest segments of a 20.5M-event index took the writer child to 7.6 GiB of RSS, of which
384 MiB anonymous and 7.3 GiB file-backed pages (``benchmarks/merge_memory.py``). Those pages
are page cache (clean, reclaimable), but RSS is what a memory budget and an operator see.

``MappedTrimmer`` reads ``/proc/self/smaps`` every ``interval`` seconds and, when the pages
resident in the mappings of files under a directory exceed ``limit`` bytes, drops them from
this process with ``madvise(MADV_DONTNEED)``. For a read-only file mapping that only unmaps
the pages: they stay in the page cache, and the next access maps them again (a minor fault),
so no data and no correctness is at stake; a merge reads its sources once, in order.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading
from pathlib import Path

__all__ = ["MAPPED_LIMIT", "MappedTrimmer", "mapped_resident", "trim_mapped"]

logger = logging.getLogger(__name__)

_MADV_DONTNEED = 4
MAPPED_LIMIT = 256 << 20  # resident bytes of mapped index files a process keeps
_libc: ctypes.CDLL | None = None


def _madvise() -> ctypes.CDLL | None:
    global _libc
    if _libc is None and sys.platform == "linux":
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _libc.madvise.restype = ctypes.c_int
    return _libc


def _mappings(root: str) -> list[tuple[int, int, int]]:
    """``(start, end, resident bytes)`` of this process's read-only mappings of files under
    ``root`` (``/proc/self/smaps``; empty elsewhere than Linux)."""
    out: list[tuple[int, int, int]] = []
    try:
        text = Path("/proc/self/smaps").read_text()
    except OSError:
        return out
    current: tuple[int, int] | None = None
    for line in text.splitlines():
        first = line.split(maxsplit=5)
        if not first:
            continue
        if not first[0].endswith(":"):  # a mapping's header: "lo-hi perms offset dev inode path"
            current = None
            path = first[5] if len(first) == 6 else ""
            if path.startswith(root) and "w" not in first[1]:
                lo, hi = first[0].split("-")
                current = (int(lo, 16), int(hi, 16))
        elif current is not None and line.startswith("Rss:"):
            out.append((current[0], current[1], int(line.split()[1]) << 10))
            current = None
    return out


def _rss_file() -> int:
    """This process's file-backed resident bytes (``RssFile``; -1 when unknown)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssFile:"):
                return int(line.split()[1]) << 10
    except OSError:
        pass
    return -1


def mapped_resident(directory: Path | str) -> int:
    """Bytes resident in this process's read-only mappings of files under ``directory``."""
    root = os.path.realpath(directory) + os.sep
    return sum(rss for _, _, rss in _mappings(root))


def trim_mapped(directory: Path | str) -> int:
    """Drop the resident pages of this process's read-only mappings of files under
    ``directory``; return the bytes that were resident in them."""
    return _drop(_mappings(os.path.realpath(directory) + os.sep))


def _drop(mappings: list[tuple[int, int, int]]) -> int:
    """``madvise(MADV_DONTNEED)`` each mapping with resident pages; the bytes dropped."""
    libc = _madvise()
    if libc is None:
        return 0
    dropped = 0
    for start, end, rss in mappings:
        if rss and libc.madvise(start, end - start, _MADV_DONTNEED) == 0:
            dropped += rss
    return dropped


class MappedTrimmer:
    """A daemon thread keeping the resident pages mapped from ``directory`` under ``limit``.

    Performance: one ``/proc/self/status`` read per ``interval``; ``/proc/self/smaps`` (a few
    ms for the manager's mappings) only while the process's file-backed pages are over
    ``limit``; pages are dropped only past ``limit``, so a search's working set stays mapped.
    """

    def __init__(self, directory: Path | str, limit: int, interval: float = 1.0) -> None:
        self.directory = Path(directory)
        self.limit = limit
        self.interval = interval
        self.dropped = 0  # bytes unmapped so far
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> MappedTrimmer:
        """Start the thread (Linux only; a no-op elsewhere)."""
        if sys.platform == "linux" and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="heron-index-trim", daemon=True)
            self._thread.start()
        return self

    def check(self) -> int:
        """Trim now if past the limit; return the bytes dropped."""
        if 0 <= _rss_file() <= self.limit:  # all file pages: the index's are among them
            return 0
        mappings = _mappings(os.path.realpath(self.directory) + os.sep)  # one smaps read
        if sum(rss for _, _, rss in mappings) <= self.limit:
            return 0
        dropped = _drop(mappings)
        self.dropped += dropped
        return dropped

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # never let the trimmer take the process down
                logger.warning("trimming mapped index pages failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
