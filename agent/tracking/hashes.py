"""File hashing for enrichment and IoC matching: md5, sha1, sha256 and PE imphash.

``FileHasher`` keeps a bounded LRU cache keyed by (path, size, mtime, inode), so a binary that
starts a thousand times is read once. It is thread-safe: live sources and the pipeline share it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["FileHashes", "FileHasher", "imphash"]

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FileHashes:
    """Hashes of one file (lower-case hex; ``imphash`` empty unless a PE with imports)."""

    md5: str
    sha1: str
    sha256: str
    imphash: str = ""
    size: int = 0

    def sysmon(self) -> str:
        """Sysmon ``Hashes`` field: ``SHA1=…,MD5=…,SHA256=…,IMPHASH=…`` (upper case)."""
        parts = [
            f"SHA1={self.sha1.upper()}",
            f"MD5={self.md5.upper()}",
            f"SHA256={self.sha256.upper()}",
        ]
        if self.imphash:
            parts.append(f"IMPHASH={self.imphash.upper()}")
        return ",".join(parts)

    def to_dict(self) -> dict[str, str]:
        return {"md5": self.md5, "sha1": self.sha1, "sha256": self.sha256, "imphash": self.imphash}


def imphash(path: str) -> str:
    """PE import hash via pefile; empty for non-PE files or PEs without imports."""
    try:
        import pefile

        pe = pefile.PE(path, fast_load=True)
        try:
            pe.parse_data_directories(
                directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"]]
            )
            return str(pe.get_imphash() or "")
        finally:
            pe.close()
    except Exception as ex:  # noqa: BLE001 - pefile raises PEFormatError and assorted struct errors
        logger.debug("imphash(%s) failed: %s", path, ex)
        return ""


class FileHasher:
    """Hash files with a bounded cache; returns ``None`` for unreadable or oversized files."""

    def __init__(self, *, max_size: int = 64 * 1024 * 1024, cache_size: int = 4096) -> None:
        self.max_size = max_size
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, int, int, int], FileHashes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def hash_file(self, path: str, st: os.stat_result | None = None) -> FileHashes | None:
        """Hashes of the regular file at ``path`` (``st``: its ``os.stat``, if already made)."""
        if st is None:
            try:
                st = os.stat(path)
            except OSError:
                return None
        if not stat.S_ISREG(st.st_mode) or st.st_size > self.max_size:
            return None
        key = (path, st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                self.hits += 1
                return cached
        result = self._compute(path, st.st_size)
        if result is None:
            return None
        with self._lock:
            self.misses += 1
            self._cache[key] = result
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return result

    @staticmethod
    def _compute(path: str, size: int) -> FileHashes | None:
        md5, sha1, sha256 = hashlib.md5(), hashlib.sha1(), hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                head = fh.read(2)
                for h in (md5, sha1, sha256):
                    h.update(head)
                while chunk := fh.read(_CHUNK):
                    md5.update(chunk)
                    sha1.update(chunk)
                    sha256.update(chunk)
        except OSError:
            return None
        imp = imphash(path) if head == b"MZ" else ""
        return FileHashes(md5.hexdigest(), sha1.hexdigest(), sha256.hexdigest(), imp, size)

    def trim(self, keep: int = 0) -> None:
        """Drop cache entries down to ``keep`` (memory self-limit)."""
        with self._lock:
            while len(self._cache) > keep:
                self._cache.popitem(last=False)
