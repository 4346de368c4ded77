"""Every write Heron makes to the Tantivy index, written once.

``TantivyWriter`` is used in the manager (``sinks.LocalWriter``) and in the writer child process
(``writer_child``), so both paths add, commit, delete, merge and reopen the same way.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tantivy

from index.schema import build_schema, register_analyzers, with_raw
from index.writer_protocol import Op

__all__ = ["TantivyWriter", "delete_below_query", "deprioritise_merges", "open_index"]

_LOCK_WAIT = 30.0  # a previous writer child may still be exiting after a crash
_MERGE_NICE = 19  # segment merges yield the CPU to indexing and to the manager's ingest
_MERGE_THREAD = "merge_thread"  # Tantivy's name for its merge pool's threads


def deprioritise_merges() -> int:
    """Lower this process's Tantivy merge threads to the lowest CPU priority; how many.

    Tantivy merges segments in a pool of its own. On a saturated box a merge of the biggest
    segments (millions of documents, minutes of CPU) took CPU from ingest: a 30-minute soak
    ran 25–40 % slower while one was going on. At nice 19 merges use the CPU that indexing and
    ingest leave, and still run (the kernel gives them a share; they catch up when ingest
    slows). Linux only (threads are tasks with their own nice value there); elsewhere 0.
    """
    if sys.platform != "linux":
        return 0
    lowered = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm", encoding="ascii") as fh:
                if not fh.read().startswith(_MERGE_THREAD):
                    continue
            os.setpriority(os.PRIO_PROCESS, int(tid), _MERGE_NICE)
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        lowered += 1
    return lowered


def open_index(path: str | Path) -> tantivy.Index:
    """Open the Heron index at ``path`` with its analyzers."""
    index = tantivy.Index(build_schema(), path=str(path), reuse=True)
    register_analyzers(index)
    return index


def delete_below_query(schema: tantivy.Schema, seq: int) -> tantivy.Query:
    """The query matching every document whose ``seq`` is below ``seq``."""
    return tantivy.Query.range_query(schema, "seq", tantivy.FieldType.Unsigned, 0, seq - 1)


class TantivyWriter:
    """A ``tantivy.IndexWriter`` and the operations the store issues (one caller thread).

    Every error is Tantivy's ``ValueError``; after one, the writer may hold part of a batch, so
    the caller replaces it (only a new writer is clean: uncommitted documents are dropped).
    """

    def __init__(
        self, index: tantivy.Index, *, heap_size: int, num_threads: int, lock_wait: float = 0.0
    ) -> None:
        self.index = index
        self._heap_size = heap_size
        self._num_threads = num_threads
        self._writer: Any = self._open(lock_wait)

    def _open(self, lock_wait: float) -> Any:
        """Open the index writer, waiting up to ``lock_wait`` seconds for the writer lock."""
        deadline = time.monotonic() + lock_wait
        while True:
            try:
                writer = self.index.writer(heap_size=self._heap_size, num_threads=self._num_threads)
            except ValueError as ex:
                if "lock" not in str(ex).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
                continue
            return writer

    def add(self, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        """Add documents with their stored events (``schema.with_raw``), in order."""
        add = self._writer.add_json
        for doc, raw in pairs:
            add(with_raw(doc, raw))

    def commit(self) -> None:
        """Commit every document added and every deletion issued so far."""
        self._writer.commit()
        # Merges start after commits. A new writer's pool names its threads a moment after it
        # starts, so they are looked up at every commit (a dozen /proc reads, ~0.1 ms).
        deprioritise_merges()

    def delete_below(self, seq: int) -> None:
        """Delete every document with a ``seq`` below ``seq`` and commit (with what was added)."""
        self._writer.delete_documents_by_query(delete_below_query(self.index.schema, seq))
        self._writer.commit()

    def delete_all(self) -> None:
        """Delete every document and commit."""
        # delete_all_documents spares documents added but not yet committed.
        self._writer.commit()
        self._writer.delete_all_documents()
        self._writer.commit()

    def merge(self, *, wait: bool = True) -> None:
        """Commit, wait for segment merges, reopen the writer and collect unused files.

        ``wait=False`` (the periodic retention pass) only commits and collects: waiting for
        a merge of the largest segments (minutes at nice 19 on a busy box) stopped indexing,
        since this process serves one operation at a time. Tantivy merges on its own anyway.
        """
        self._writer.commit()
        if wait:
            self._writer.wait_merging_threads()  # consumes the writer
            self._writer = self._open(0.0)
        self._writer.garbage_collect_files()

    def close(self) -> None:
        """Wait for merges and release the writer lock (uncommitted documents are dropped)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.wait_merging_threads()

    def run(self, op: Op, arg: int) -> bool:
        """Run one protocol request (not ``Op.ADD``); False after ``Op.CLOSE``.

        Raises:
            ValueError: Tantivy failed, or an unknown operation.
        """
        if op is Op.COMMIT:
            self.commit()
        elif op is Op.DELETE_BELOW:
            self.delete_below(arg)
        elif op is Op.DELETE_ALL:
            self.delete_all()
        elif op is Op.MERGE:
            self.merge(wait=arg == 0)
        elif op is Op.CLOSE:
            self.close()
            return False
        else:
            raise ValueError(f"unknown operation {op!r}")
        return True
