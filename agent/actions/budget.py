"""Evidence budgets: the artifact quota, per-rule rate limits and the sha256 de-duplication index.

* **Quota** (``actions.artifact_quota_bytes``, ``actions.artifact_quota_per_hour``): before an
  evidence job runs, the bytes under the artifact root and the bytes written in the last hour are
  compared with the quota. Over the disk quota the oldest *already uploaded* artifact directories
  (marked ``.uploaded`` by the uploader when it keeps them) are evicted first; if that is not
  enough the job is skipped and counted per action (``over_quota``). The hourly quota only skips.
* **Rate limits** (``actions.max_per_rule_hour``, ``actions.rule_limits`` ``["Rule=N", …]``): at
  most N evidence jobs per rule in any sliding hour; more are skipped and counted per rule.
* **De-duplication**: a file already dumped anywhere in the artifact store (same sha256) is not
  copied again; the new artifact directory lists a reference to the first copy instead.

The store is shared by the runner's worker threads (one lock).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import parse_rule_limits

__all__ = ["ArtifactStore", "BudgetStats", "RuleLimiter", "parse_rule_limits"]

logger = logging.getLogger(__name__)

UPLOADED_MARK = ".uploaded"
_HOUR = 3600.0
_MAX_INDEX = 100_000  # sha256 entries remembered (≈ 15 MB worst case)


class RuleLimiter:
    """Sliding one-hour window of evidence jobs per rule."""

    def __init__(
        self,
        default: int,
        per_rule: dict[str, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default = default
        self.per_rule = dict(per_rule or {})
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def limit(self, rule: str) -> int:
        return self.per_rule.get(rule, self.default)

    def allow(self, rules: list[str]) -> bool:
        """True (and counted against each rule with room) when any rule is under its limit."""
        if not rules:
            return True
        now = self.clock()
        with self._lock:
            room = []
            for rule in rules:
                limit = self.limit(rule)
                if limit <= 0:
                    return True  # 0: unlimited
                hits = self._hits.setdefault(rule, deque())
                while hits and now - hits[0] >= _HOUR:
                    hits.popleft()
                if len(hits) < limit:
                    room.append(hits)
            for hits in room:
                hits.append(now)
            return bool(room)


@dataclass(slots=True)
class BudgetStats:
    """Counters shown in ``status`` under ``actions.budget``."""

    bytes_on_disk: int = 0
    bytes_last_hour: int = 0
    written: int = 0
    evicted_dirs: int = 0
    evicted_bytes: int = 0
    dedup_refs: int = 0
    dedup_bytes_saved: int = 0
    over_quota: dict[str, int] = field(default_factory=dict)
    rate_limited: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        return {
            "bytes_on_disk": self.bytes_on_disk,
            "bytes_last_hour": self.bytes_last_hour,
            "written": self.written,
            "evicted_dirs": self.evicted_dirs,
            "evicted_bytes": self.evicted_bytes,
            "dedup_refs": self.dedup_refs,
            "dedup_bytes_saved": self.dedup_bytes_saved,
            "over_quota": dict(self.over_quota),
            "rate_limited": dict(self.rate_limited),
        }


def _dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


class ArtifactStore:
    """Byte accounting, quota and the cross-directory sha256 index of one artifact root."""

    def __init__(
        self,
        root: Path,
        *,
        quota_bytes: int,
        quota_per_hour: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = Path(root)
        self.quota_bytes = quota_bytes
        self.quota_per_hour = quota_per_hour
        self.clock = clock
        self.stats = BudgetStats()
        self._recent: deque[tuple[float, int]] = deque()
        self._index: OrderedDict[str, str] = OrderedDict()  # sha256 -> "guid/hash/name"
        self._lock = threading.Lock()
        self._scanned = False
        self._refreshed = clock()

    # --- accounting --------------------------------------------------------------------------

    def _scan(self) -> None:
        """First use: bytes already on disk and the sha256 of dumped files (from manifests)."""
        self._scanned = True
        if not self.root.is_dir():
            return
        self.stats.bytes_on_disk = _dir_bytes(self.root)
        for manifest in sorted(
            self.root.glob("*/*/manifest.json"), key=lambda p: p.stat().st_mtime
        ):
            try:
                doc = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            rel = manifest.parent.relative_to(self.root).as_posix()
            for f in doc.get("files", []):
                if isinstance(f, dict) and f.get("kind") == "filedump" and f.get("sha256"):
                    self._remember(str(f["sha256"]), f"{rel}/{f.get('name', '')}")

    def _remember(self, sha256: str, rel: str) -> None:
        self._index[sha256] = rel
        self._index.move_to_end(sha256)
        while len(self._index) > _MAX_INDEX:
            self._index.popitem(last=False)

    def _hour_bytes(self, now: float) -> int:
        while self._recent and now - self._recent[0][0] >= _HOUR:
            self._recent.popleft()
        return sum(n for _, n in self._recent)

    def added(self, size: int) -> None:
        """``size`` bytes were written under the root."""
        with self._lock:
            if not self._scanned:
                self._scan()
            now = self.clock()
            self._recent.append((now, size))
            self.stats.bytes_on_disk += size
            self.stats.written += size
            self.stats.bytes_last_hour = self._hour_bytes(now)

    def removed(self, size: int) -> None:
        """``size`` bytes left the root (uploaded and deleted, evicted)."""
        with self._lock:
            self.stats.bytes_on_disk = max(0, self.stats.bytes_on_disk - size)

    def refresh(self) -> None:
        """Re-measure the bytes on disk (the uploader deletes files behind our back)."""
        size = _dir_bytes(self.root) if self.root.is_dir() else 0
        with self._lock:
            self.stats.bytes_on_disk = size
            self._refreshed = self.clock()

    # --- quota -------------------------------------------------------------------------------

    def admit(self, actions: Iterable[str]) -> bool:
        """True when an evidence job may run now; else counted per action in ``over_quota``."""
        names = list(actions)
        if self.clock() - self._refreshed >= 10.0:
            self.refresh()
        with self._lock:
            if not self._scanned:
                self._scan()
            hour = self._hour_bytes(self.clock())
            self.stats.bytes_last_hour = hour
            over_disk = 0 < self.quota_bytes <= self.stats.bytes_on_disk
            over_hour = 0 < self.quota_per_hour <= hour
        if over_disk and not over_hour:
            self._evict_uploaded()
            with self._lock:
                over_disk = 0 < self.quota_bytes <= self.stats.bytes_on_disk
        if not (over_disk or over_hour):
            return True
        with self._lock:
            for name in names:
                self.stats.over_quota[name] = self.stats.over_quota.get(name, 0) + 1
        return False

    def _evict_uploaded(self) -> None:
        """Delete the oldest uploaded artifact directories until under the disk quota."""
        marks = sorted(self.root.glob(f"*/*/{UPLOADED_MARK}"), key=lambda p: p.stat().st_mtime)
        for mark in marks:
            with self._lock:
                if self.stats.bytes_on_disk < self.quota_bytes:
                    return
            size = _dir_bytes(mark.parent)
            shutil.rmtree(mark.parent, ignore_errors=True)
            with self._lock:
                self.stats.bytes_on_disk = max(0, self.stats.bytes_on_disk - size)
                self.stats.evicted_dirs += 1
                self.stats.evicted_bytes += size
            logger.info("artifact quota: evicted uploaded %s (%d bytes)", mark.parent, size)

    def rate_limited(self, rules: list[str]) -> None:
        with self._lock:
            for rule in rules or ["?"]:
                self.stats.rate_limited[rule] = self.stats.rate_limited.get(rule, 0) + 1

    # --- de-duplication ----------------------------------------------------------------------

    def known(self, sha256: str) -> str | None:
        """Where a file with this sha256 was first dumped (relative to the root), or None."""
        with self._lock:
            if not self._scanned:
                self._scan()
            return self._index.get(sha256)

    def dumped(self, sha256: str, path: Path) -> None:
        """Remember the first copy of a file."""
        try:
            rel = path.relative_to(self.root).as_posix()
        except ValueError:
            rel = str(path)
        with self._lock:
            self._remember(sha256, rel)

    def referenced(self, size: int) -> None:
        with self._lock:
            self.stats.dedup_refs += 1
            self.stats.dedup_bytes_saved += size
