"""Artifact uploads (chunked, resumable, sha256-verified) and downloads, under anchored paths.

Layout: `<data>/artifacts/<endpoint uuid>/<process guid without braces>/<event hash>/<filename>`.
Chunk k of n is written to `.parts/<filename>.<k>` (so a retried chunk simply overwrites itself and
an interrupted upload resumes); when every part is present the file is assembled, its sha256 is
checked against the one the agent declared, and only then it appears in listings.

Security: every name is matched with an anchored regex (`fullmatch`) and the final path is
checked to stay under the endpoint's directory (WHIDS's regexes were unanchored:
docs/reference/whids.md §2.7).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import logging
import os
import re
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rules import wire

from ..core.errors import InvalidParam, NotFound, PayloadTooLarge, TooManyRequests, ValidationError
from ..core.timefmt import rfc3339
from ..store import Artifact, Store
from .bodies import decompress
from .diskguard import DiskGuard

__all__ = ["ArtifactStore", "normalize_guid"]

logger = logging.getLogger(__name__)

FILENAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\- ]{0,199}")
GUID = re.compile(
    r"\{?([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})\}?"
)
EVENT_HASH = re.compile(r"[0-9a-f]{32,128}")
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_CHUNKS = 10_000


def normalize_guid(value: str) -> str:
    """`{GUID}` or `GUID` → lower-case GUID without braces; InvalidParam otherwise."""
    match = GUID.fullmatch(value or "")
    if match is None:
        raise InvalidParam(f"not a process GUID: {value!r}")
    return match.group(1).lower()


# Names Windows maps to devices (with any extension), and names it silently changes.
WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul", "conin$", "conout$"}
    | {f"{dev}{n}" for dev in ("com", "lpt") for n in (*"123456789", "¹", "²", "³")}
)


def check_filename(name: str) -> str:
    """`name` if it is a safe artifact file name on every OS, else InvalidParam."""
    if not isinstance(name, str) or not FILENAME.fullmatch(name) or ".." in name:
        raise InvalidParam(f"unsafe artifact file name: {name!r}")
    if name.split(".", 1)[0].strip().lower() in WINDOWS_RESERVED or name[-1] in ". ":
        raise InvalidParam(f"artifact file name reserved on Windows: {name!r}")
    return name


def check_hash(value: str) -> str:
    if not isinstance(value, str) or not EVENT_HASH.fullmatch(value):
        raise InvalidParam(f"not an event hash: {value!r}")
    return value


class ArtifactStore:
    """Artifact files on disk plus their metadata rows."""

    def __init__(
        self,
        root: Path,
        store: Store,
        *,
        clock: Callable[[], float],
        max_size: int,
        max_chunk: int,
        parts_quota: int = 1 << 30,
        expiry: float = 86400.0,
    ) -> None:
        self.root = root
        self.store = store
        self.clock = clock
        self.max_size = max_size
        self.max_chunk = max_chunk
        self.parts_quota = parts_quota
        self.expiry = expiry
        self.disk: DiskGuard | None = None  # set by build_context
        self._swept = float("-inf")

    def _dir(self, endpoint: str, pguid: str, ehash: str) -> Path:
        base = (self.root / endpoint).resolve()
        path = (base / normalize_guid(pguid) / check_hash(ehash)).resolve()
        if base not in path.parents:
            raise InvalidParam("artifact path escapes the endpoint directory")
        return path

    def receive(self, endpoint: str, chunk: wire.UploadChunk) -> dict[str, Any]:
        """Store one chunk; assemble and verify the file when all chunks are present."""
        name = check_filename(chunk.filename)
        if not isinstance(chunk.sha256, str) or not SHA256.fullmatch(chunk.sha256.lower()):
            raise ValidationError("sha256 must be the hex sha256 of the whole file")
        if not (
            isinstance(chunk.chunk, int)
            and isinstance(chunk.total, int)
            and 1 <= chunk.chunk <= chunk.total <= MAX_CHUNKS
        ):
            raise ValidationError(f"chunk must be 1..total and total ≤ {MAX_CHUNKS}")
        if chunk.total * self.max_chunk < chunk.size or chunk.size > self.max_size:
            raise PayloadTooLarge(f"artifact exceeds {self.max_size} bytes")
        try:
            data = base64.b64decode(chunk.content, validate=True)
        except (binascii.Error, ValueError, TypeError) as ex:
            raise ValidationError("content is not valid base64") from ex
        if len(data) > self.max_chunk:
            raise PayloadTooLarge(f"chunk exceeds {self.max_chunk} bytes")
        directory = self._dir(endpoint, chunk.guid, chunk.event_hash)
        if self.disk is not None:
            self.disk.check("upload")
        self.sweep()
        held = _parts_bytes(self.root / endpoint)
        if held + len(data) > self.parts_quota:
            raise TooManyRequests(
                f"unfinished uploads of this endpoint hold {held} bytes "
                f"(limits.upload_parts_quota = {self.parts_quota}); finish or wait for expiry",
                retry_after=300,
            )
        parts = directory / ".parts"
        parts.mkdir(parents=True, exist_ok=True)
        part = parts / f"{name}.{chunk.chunk}"
        tmp = part.with_suffix(part.suffix + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, part)
        present = [k for k in range(1, chunk.total + 1) if (parts / f"{name}.{k}").exists()]
        missing = [k for k in range(1, chunk.total + 1) if k not in present]
        if missing:
            return {
                "filename": name,
                "complete": False,
                "received": len(present),
                "missing": missing[:100],
            }
        return self._assemble(endpoint, directory, name, chunk)

    def sweep(self, *, force: bool = False) -> int:
        """Delete upload chunks older than `expiry` (at most every 10 min); returns files."""
        now = time.time()
        if not force and now - self._swept < 600:
            return 0
        self._swept = now
        removed = 0
        for part in self.root.glob("*/*/*/.parts/*"):
            try:
                if now - part.stat().st_mtime > self.expiry:
                    part.unlink()
                    removed += 1
            except OSError:
                continue
        if removed:
            logger.info("removed %d expired upload chunk(s)", removed)
        return removed

    def _assemble(
        self, endpoint: str, directory: Path, name: str, chunk: wire.UploadChunk
    ) -> dict[str, Any]:
        parts = directory / ".parts"
        digest = hashlib.sha256()
        tmp = directory / f".{name}.assembling"
        size = 0
        with tmp.open("wb") as out:
            for k in range(1, chunk.total + 1):
                data = (parts / f"{name}.{k}").read_bytes()
                size += len(data)
                if size > self.max_size:
                    tmp.unlink()
                    raise PayloadTooLarge(f"artifact exceeds {self.max_size} bytes")
                digest.update(data)
                out.write(data)
        if digest.hexdigest() != chunk.sha256.lower():
            tmp.unlink()
            for k in range(1, chunk.total + 1):
                (parts / f"{name}.{k}").unlink(missing_ok=True)
            raise ValidationError("sha256 mismatch: upload discarded, send every chunk again")
        os.replace(tmp, directory / name)
        for k in range(1, chunk.total + 1):
            (parts / f"{name}.{k}").unlink(missing_ok=True)
        pguid = normalize_guid(chunk.guid)
        self.store.artifacts.add(
            Artifact(
                endpoint, pguid, chunk.event_hash, name, size, digest.hexdigest(), self.clock()
            )
        )
        logger.info(
            "artifact %s/%s/%s/%s stored (%d bytes)", endpoint, pguid, chunk.event_hash, name, size
        )
        return {"filename": name, "complete": True, "size": size, "sha256": digest.hexdigest()}

    def listing(self, endpoint: str | None, since: float) -> dict[str, list[dict[str, Any]]]:
        """WHIDS `EndpointDumps` listing, grouped by endpoint then (pguid, event hash)."""
        grouped: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        for art in self.store.artifacts.list(endpoint=endpoint, since=since):
            dumps = grouped.setdefault(art.endpoint, {})
            item = dumps.setdefault(
                (art.pguid, art.ehash),
                {
                    "creation": rfc3339(art.created),
                    "modification": rfc3339(art.created),
                    "process-guid": art.pguid,
                    "event-hash": art.ehash,
                    "base-url": f"/endpoints/{art.endpoint}/artifacts/{art.pguid}/{art.ehash}/",
                    "files": [],
                },
            )
            item["modification"] = rfc3339(art.created)
            item["files"].append(
                {
                    "name": art.filename,
                    "size": art.size,
                    "timestamp": rfc3339(art.created),
                    "sha256": art.sha256,
                }
            )
        return {k: list(v.values()) for k, v in grouped.items()}

    def prune(self, *, before: float | None, endpoint_max_bytes: int) -> dict[str, Any]:
        """Delete artifacts received before `before`, then the oldest of every endpoint holding
        more than `endpoint_max_bytes` (0: no cap). Returns what was removed, per endpoint."""
        removed: dict[str, dict[str, int]] = {}

        def drop(art: Artifact) -> None:
            try:
                directory = self._dir(art.endpoint, art.pguid, art.ehash)
                (directory / art.filename).unlink(missing_ok=True)
                if directory.is_dir() and not any(directory.iterdir()):
                    directory.rmdir()
                    if not any(directory.parent.iterdir()):
                        directory.parent.rmdir()
            except (OSError, InvalidParam) as ex:
                logger.warning(
                    "artifact retention: cannot delete %s/%s: %s", art.endpoint, art.filename, ex
                )
            self.store.artifacts.delete(art)
            entry = removed.setdefault(art.endpoint, {"files": 0, "bytes": 0})
            entry["files"] += 1
            entry["bytes"] += art.size

        if before is not None:
            for art in self.store.artifacts.list():
                if art.created >= before:
                    break  # listed oldest first
                drop(art)
        if endpoint_max_bytes > 0:
            for endpoint, total in self.store.artifacts.usage().items():
                if total <= endpoint_max_bytes:
                    continue
                for art in self.store.artifacts.list(endpoint=endpoint):
                    if total <= endpoint_max_bytes:
                        break
                    drop(art)
                    total -= art.size
        return {
            "files": sum(e["files"] for e in removed.values()),
            "bytes": sum(e["bytes"] for e in removed.values()),
            "by_endpoint": removed,
        }

    def read(self, endpoint: str, pguid: str, ehash: str, filename: str, *, gunzip: bool) -> bytes:
        """The file's bytes (decompressed with `gunzip`), at most `INLINE_MAX` of them."""
        path = self.path(endpoint, pguid, ehash, filename)
        if path.stat().st_size > INLINE_MAX:
            raise PayloadTooLarge(f"{path.name} is over {INLINE_MAX} bytes: download it raw=true")
        data = path.read_bytes()
        if gunzip:
            data = decompress(data, "gzip", INLINE_MAX, what=path.name)
        return data

    def path(self, endpoint: str, pguid: str, ehash: str, filename: str) -> Path:
        """The file of a stored artifact on disk (NotFound if missing)."""
        name = check_filename(filename)
        art = self.store.artifacts.get(endpoint, normalize_guid(pguid), check_hash(ehash), name)
        path = self._dir(endpoint, art.pguid, art.ehash) / name
        if not path.is_file():
            raise NotFound(f"artifact file {name} is missing on disk")
        return path

    def stream(
        self, endpoint: str, pguid: str, ehash: str, filename: str, *, gunzip: bool, cap: int
    ) -> tuple[int, Iterator[bytes]]:
        """(length, chunks) of a raw download; with `gunzip` at most `cap` decompressed bytes.

        Security: a 1 MB upload of 1 GiB of zeros became a 1 GiB response held in
        memory twice; the decompressed size is now counted in a first streaming pass (413 past
        `cap`), then the file is streamed in `CHUNK`-byte pieces.
        """
        path = self.path(endpoint, pguid, ehash, filename)
        if not gunzip:
            return path.stat().st_size, _chunks(path, gunzip=False)
        size = 0
        try:
            for chunk in _chunks(path, gunzip=True):
                size += len(chunk)
                if size > cap:
                    raise PayloadTooLarge(
                        f"{path.name} decompresses to more than {cap} bytes "
                        "(limits.upload_size): download it without gunzip"
                    )
        except (OSError, EOFError, zlib.error) as ex:
            raise InvalidParam(f"{path.name} is not gzip data") from ex
        return size, _chunks(path, gunzip=True)


INLINE_MAX = 64 * 1024 * 1024  # bytes of a download returned base64 in JSON (raw=true streams)
CHUNK = 256 * 1024


def _chunks(path: Path, *, gunzip: bool) -> Iterator[bytes]:
    opener = gzip.open if gunzip else open
    with opener(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def _parts_bytes(endpoint_dir: Path) -> int:
    """Bytes of the unfinished upload chunks under one endpoint's directory."""
    total = 0
    for part in endpoint_dir.glob("*/*/.parts/*"):
        try:
            total += part.stat().st_size
        except OSError:
            continue
    return total
