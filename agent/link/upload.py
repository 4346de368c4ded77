"""Artifact upload: chunked, resumable, sha256-verified `POST /upload/dumps`.

The agent's actions write `<artifacts>/<process-guid>/<event-hash>/<files>`; a directory is ready
once its `manifest.json` exists (written last) or it has not changed for `settle` seconds. Each
file goes as `rules.wire.UploadChunk`s (base64, 1-based `chunk`, whole-file `sha256`), the
manifest last. Progress is kept in `<file>.upload` so a restart resumes at the next chunk; the file
is deleted only after the manager accepted its last chunk (and verified the hash). A file over the
size limit is never dropped silently: it is reported (WARNING + a health event) and kept.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rules import wire

from .errors import HTTPStatusError, LinkError
from .identity import write_atomic
from .transport import Request, Transport

logger = logging.getLogger(__name__)

HEALTH_UPLOAD_TOO_LARGE = 9004


@dataclass(frozen=True, slots=True)
class UploadStats:
    """One pass over the artifact tree."""

    files: int = 0
    chunks: int = 0
    skipped_too_large: int = 0
    failed: int = 0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Uploader:
    """Uploads ready artifact directories; `run_once()` is one pass."""

    def __init__(
        self,
        transport: Transport,
        root: Path,
        *,
        max_size: int = wire.MAX_UPLOAD_SIZE,
        chunk_size: int = wire.UPLOAD_CHUNK_SIZE,
        settle: float = 300.0,
        clock: Callable[[], float] = time.time,
        report: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.transport = transport
        self.root = Path(root)
        self.max_size = min(max_size, wire.MAX_UPLOAD_SIZE)
        self.chunk_size = min(chunk_size, wire.UPLOAD_CHUNK_SIZE)
        self.settle = settle
        self.clock = clock
        self.report = report

    def ready_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        out = []
        for guid in sorted(self.root.iterdir()):
            if not guid.is_dir():
                continue
            for ev in sorted(guid.iterdir()):
                if not ev.is_dir():
                    continue
                if (
                    ev / wire.ARTIFACT_MANIFEST
                ).exists() or self.clock() - ev.stat().st_mtime > self.settle:
                    out.append(ev)
        return out

    def run_once(self) -> UploadStats:
        files = chunks = big = failed = 0
        for d in self.ready_dirs():
            names = sorted(
                p.name
                for p in d.iterdir()
                if p.is_file() and not p.name.endswith((".upload", ".toolarge", ".tmp"))
            )
            names.sort(key=lambda n: n == wire.ARTIFACT_MANIFEST)  # manifest last
            for name in names:
                path = d / name
                size = path.stat().st_size
                if size > self.max_size:
                    big += self._too_large(path, size)
                    continue
                try:
                    chunks += self.upload_file(path, guid=d.parent.name, event_hash=d.name)
                    files += 1
                except LinkError as ex:
                    logger.warning("upload of %s paused: %s", path, ex)
                    return UploadStats(files, chunks, big, failed + 1)
            self._prune(d)
        return UploadStats(files, chunks, big, failed)

    def _too_large(self, path: Path, size: int) -> int:
        marker = path.with_name(path.name + ".toolarge")
        if marker.exists():
            return 0
        marker.write_text(str(size))
        logger.warning(
            "artifact %s is %d bytes, over the %d-byte upload limit: kept locally, not uploaded",
            path,
            size,
            self.max_size,
        )
        if self.report is not None:
            self.report(
                {
                    "EventID": HEALTH_UPLOAD_TOO_LARGE,
                    "Message": "artifact over the upload limit kept on the endpoint",
                    "Path": str(path),
                    "Size": size,
                    "Limit": self.max_size,
                }
            )
        return 1

    def _prune(self, d: Path) -> None:
        for p in (d, d.parent):
            try:
                p.rmdir()  # only when empty
            except OSError:
                return

    def upload_file(self, path: Path, *, guid: str, event_hash: str) -> int:
        """Send one file from where it stopped; delete it once accepted. Returns chunks sent."""
        progress = path.with_name(path.name + ".upload")
        size = path.stat().st_size
        sha = _sha256(path)
        total = max(1, math.ceil(size / self.chunk_size))
        start = 1
        if progress.exists():
            state = json.loads(progress.read_text())
            if state.get("sha256") == sha and state.get("total") == total:
                start = int(state["next"])
        sent = 0
        with open(path, "rb") as fh:
            fh.seek((start - 1) * self.chunk_size)
            for n in range(start, total + 1):
                data = fh.read(self.chunk_size)
                chunk = wire.UploadChunk(
                    filename=path.name,
                    guid=guid,
                    event_hash=event_hash,
                    content=base64.b64encode(data).decode("ascii"),
                    chunk=n,
                    total=total,
                    sha256=sha,
                    size=size,
                )
                resp = self.transport.send(
                    Request(
                        "POST",
                        wire.ROUTE_UPLOAD_DUMPS,
                        json.dumps(chunk.to_dict()).encode(),
                        {"Content-Type": wire.CONTENT_JSON},
                    )
                )
                if resp.status != 200:
                    if n == total and resp.status in (400, 409, 422):
                        progress.unlink(missing_ok=True)  # hash mismatch: start over next time
                    raise HTTPStatusError(resp.status, resp.body, path=wire.ROUTE_UPLOAD_DUMPS)
                sent += 1
                write_atomic(
                    progress, json.dumps({"sha256": sha, "total": total, "next": n + 1}).encode()
                )
        os.unlink(path)
        progress.unlink(missing_ok=True)
        logger.info("uploaded %s (%d bytes, %d chunks)", path, size, total)
        return sent
