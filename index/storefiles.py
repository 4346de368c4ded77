"""The files an ``EventStore`` opens first: its owner lock and its schema-versioned index."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import tantivy

from index.errors import StoreError
from index.schema import SCHEMA_VERSION
from index.tantivy_writer import open_index

__all__ = ["Closer", "lock_root", "open_versioned_index"]

logger = logging.getLogger("index.store")


def lock_root(root: Path) -> TextIO:
    """Hold an exclusive lock on ``root/LOCK`` for the life of the store (one owner process).

    POSIX only: on Windows, Tantivy's own writer lock guards the index.
    """
    handle = (root / "LOCK").open("a+")
    if sys.platform != "win32":
        import fcntl

        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as ex:
            handle.close()
            raise StoreError(f"event store {root} is in use by another process") from ex
    return handle


class Closer:
    """Adapts a close function to the ``close()`` of the parts opened so far."""

    def __init__(self, close: Callable[[], None]) -> None:
        self.close = close


def open_versioned_index(path: Path) -> tantivy.Index:
    """The Tantivy index at ``path``, rebuilt empty (from the journal) when its schema is not
    ``SCHEMA_VERSION``."""
    marker = path / "heron-schema.json"
    try:
        version = json.loads(marker.read_text()).get("version") if marker.exists() else None
        if version != SCHEMA_VERSION and path.exists():
            logger.warning(
                "index schema %s != %s: rebuilding from the journal", version, SCHEMA_VERSION
            )
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        index = open_index(path)
        marker.write_text(json.dumps({"version": SCHEMA_VERSION}))
    except (OSError, ValueError) as ex:
        raise StoreError(f"cannot open index {path}: {ex}") from ex
    return index
