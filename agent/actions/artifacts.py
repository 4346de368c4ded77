"""Artifact directories ``<process-guid>/<event-hash>/`` with a chain-of-custody manifest.

Layout (docs/interfaces.md, "Artifact directory layout"): ``event.json`` (the triggering event),
dumped files, ``report.json`` and ``manifest.json``::

    {"endpoint", "hostname", "process_guid", "event_hash", "rule": [signatures], "time",
     "files": [{"name", "kind", "sha256", "size"}]}

The process GUID is written without braces. Files are written under a hidden temporary name and
renamed, and the manifest is rewritten the same way every time a file is added, so it always
lists exactly the complete files present; it never lists itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.render import rfc3339_nano

__all__ = ["ArtifactDir", "ArtifactFile", "sha256_file"]

MANIFEST = "manifest.json"
_SAFE_RE = re.compile(r"[^A-Za-z0-9._-]+")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def safe_name(name: str) -> str:
    """A file name usable on every platform (``:`` → ``_ADS_`` as WHIDS, others → ``_``)."""
    return _SAFE_RE.sub("_", name.replace(":", "_ADS_")).strip("._") or "file"


@dataclass(frozen=True, slots=True)
class ArtifactFile:
    """One file of an artifact directory."""

    name: str
    kind: str
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "sha256": self.sha256, "size": self.size}


class ArtifactDir:
    """One ``<guid>/<event-hash>`` directory; thread-safe ``add_*`` calls."""

    def __init__(
        self,
        root: Path,
        *,
        process_guid: str,
        event_hash: str,
        endpoint: str,
        hostname: str,
        rule: list[str],
        ts: float,
        on_write: Callable[[int], None] | None = None,
    ) -> None:
        self.process_guid = process_guid.strip("{}") or "00000000-0000-0000-0000-000000000000"
        self.event_hash = event_hash
        self.path = Path(root) / safe_name(self.process_guid) / event_hash
        self.endpoint = endpoint
        self.hostname = hostname
        self.rule = list(rule)
        self.time = rfc3339_nano(ts)
        self._files: dict[str, ArtifactFile] = {}
        self._lock = threading.Lock()
        self.on_write = on_write  # bytes of every registered file (artifact quota accounting)

    def _ensure(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def unique(self, name: str) -> Path:
        """A path for ``name`` inside the directory that does not exist yet."""
        self._ensure()
        base = safe_name(name)
        candidate = self.path / base
        n = 1
        while candidate.exists() or candidate.name == MANIFEST:
            stem, dot, ext = base.partition(".")
            candidate = self.path / f"{stem}-{n}{dot}{ext}"
            n += 1
        return candidate

    def _write(self, path: Path, data: bytes) -> None:
        """Write atomically: readers never see a partial file under its final name."""
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_bytes(data)
        except OSError:
            tmp.unlink(missing_ok=True)  # a disk-full leftover must not fill the disk further
            raise
        os.replace(tmp, path)

    def add_bytes(self, name: str, data: bytes, kind: str) -> ArtifactFile:
        with self._lock:
            path = self.unique(name)
            self._write(path, data)
        return self.register(path, kind)

    def add_json(self, name: str, obj: Any, kind: str) -> ArtifactFile:
        data = json.dumps(obj, indent=1, sort_keys=False, default=str).encode("utf-8")
        path = self.path / name
        self._ensure()
        self._write(path, data)
        return self.register(path, kind)

    def register(self, path: Path, kind: str) -> ArtifactFile:
        """Hash ``path`` (already inside the directory) and rewrite the manifest."""
        entry = ArtifactFile(path.name, kind, sha256_file(path), path.stat().st_size)
        with self._lock:
            self._files[path.name] = entry
            self._write_manifest()
        if self.on_write is not None:
            self.on_write(entry.size)
        return entry

    def files(self) -> list[ArtifactFile]:
        with self._lock:
            return list(self._files.values())

    def manifest(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "hostname": self.hostname,
            "process_guid": self.process_guid,
            "event_hash": self.event_hash,
            "rule": self.rule,
            "time": self.time,
            "files": [f.to_dict() for f in self._files.values()],
        }

    def _write_manifest(self) -> None:
        self._ensure()
        self._write(self.path / MANIFEST, json.dumps(self.manifest(), indent=1).encode("utf-8"))


def verify(path: Path) -> list[str]:
    """Problems found checking a directory against its manifest (empty list: intact)."""
    problems = []
    manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    for entry in manifest["files"]:
        f = path / entry["name"]
        if not f.is_file():
            problems.append(f"missing {entry['name']}")
        elif sha256_file(f) != entry["sha256"]:
            problems.append(f"sha256 mismatch {entry['name']}")
    return problems
