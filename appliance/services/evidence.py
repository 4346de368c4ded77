"""Import of offline evidence: event exports from a host that never ran an agent.

`heron-manager import FILE…` reads any `rules.inputs` format (the readers of `heron scan` and
agent replay) and appends the events to the event store, attributed to an enrolled endpoint or
to a case, so they are searched and retro-hunted like agent events. Batches carry a batch id
derived from the file's path, size and mtime and the batch number, so importing the same files
again stores nothing twice (the store is idempotent on (endpoint, batch id)).
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid as uuidlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rules.inputs import InputStats, read_path, summary_lines

from ..core.errors import ValidationError
from ..store.events import EventSink
from .index_errors import index_errors

__all__ = ["ImportResult", "import_files", "case_endpoint"]

logger = logging.getLogger(__name__)
BATCH = 2000
_NAMESPACE = uuidlib.UUID("5f1e2a7c-0d5b-4f0e-9a55-6b1d3c9e8a21")  # Heron imports (uuid5 names)


@dataclass(slots=True)
class ImportResult:
    """What an import stored, and what it could not."""

    endpoint: dict[str, str]
    files: int = 0
    stored: int = 0
    duplicates: int = 0
    not_stored: int = 0  # events outside the {"Event": …} shape the store keeps
    stats: InputStats = field(default_factory=InputStats)

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "files": self.files,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "not_stored": self.not_stored,
            "shapes": dict(sorted(self.stats.shapes.items())),
            "unrecognised": self.stats.unrecognised,
            "parse_errors": self.stats.parse_errors,
            "errors": self.stats.errors[:10],
        }

    def warning(self) -> str | None:
        return summary_lines(self.stats.shapes, self.stats.events)[1]


def case_endpoint(case: str) -> dict[str, str]:
    """The endpoint a case's evidence is stored under: a stable uuid named after the case."""
    if not case.strip():
        raise ValidationError("the case name is empty")
    return {
        "uuid": str(uuidlib.uuid5(_NAMESPACE, f"case:{case}")),
        "hostname": case,
        "ip": "",
        "group": f"case:{case}",
    }


def _file_key(path: Path) -> str:
    st = path.stat()
    raw = f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()
    return hashlib.sha1(raw, usedforsecurity=False).hexdigest()[:16]


def _store(
    events: EventSink, ref: Any, batch: list[dict[str, Any]], batch_id: str, result: ImportResult
) -> None:
    with index_errors("import"):
        outcome = events.append(batch, endpoint=ref, batch_id=batch_id)
    if getattr(outcome, "duplicate", False):
        result.duplicates += len(batch)
    else:
        result.stored += len(batch)


def import_files(
    events: EventSink,
    paths: Iterable[str | Path],
    endpoint: dict[str, str],
    input_format: str = "auto",
) -> ImportResult:
    """Append the events of `paths` to `events` under `endpoint` (uuid, hostname, ip, group).

    Raises:
        ValidationError: a path does not exist or is not a file.
    """
    from index import EndpointRef

    files = [Path(p) for p in paths]
    for path in files:
        if not path.is_file():
            raise ValidationError(f"not a file: {path}")
    ref = EndpointRef(
        endpoint["uuid"],
        endpoint.get("hostname", ""),
        endpoint.get("ip", ""),
        endpoint.get("group", ""),
    )
    result = ImportResult(endpoint=dict(endpoint))
    for path in files:
        key = _file_key(path)
        batch: list[dict[str, Any]] = []
        number = 0
        before = result.stats.events
        for event in read_path(path, input_format, result.stats):
            result.stats.events += 1
            if isinstance(event, dict) and isinstance(event.get("Event"), dict):
                batch.append(event)
                if len(batch) >= BATCH:
                    _store(events, ref, batch, f"import-{key}-{number}", result)
                    batch, number = [], number + 1
            else:
                result.not_stored += 1
        if batch:
            _store(events, ref, batch, f"import-{key}-{number}", result)
        result.files += 1
        logger.info("import: %s: %d events", os.fspath(path), result.stats.events - before)
    return result
