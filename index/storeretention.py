"""``EventStore``'s retention: the floor kept in ``store.json`` and the passes that raise it
(``index.retention`` decides where a pass cuts)."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from index.batchids import BatchIds
from index.errors import StoreError
from index.journal import Journal, fsync_dir
from index.retention import Cut, disk_usage, next_ratio, plan_cut
from index.schema import SCHEMA_VERSION
from index.tables import Tables
from index.writer import Indexer

__all__ = ["RetentionPasses"]

logger = logging.getLogger("index.store")

T = TypeVar("T")


class RetentionPasses:
    """The retention part of ``EventStore`` (a mixin over the store's parts below)."""

    root: Path
    journal: Journal
    writer: Indexer
    tables: Tables
    _clock: Callable[[], float]
    _append_lock: threading.Lock
    _batches: BatchIds
    _state_path: Path
    _min_seq: int
    _size_ratio: float | None

    if TYPE_CHECKING:

        def _on_writer(self, fn: Callable[[], T], timeout: float | None = None) -> T: ...

    def _load_state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self._state_path.read_text()))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as ex:
            raise StoreError(f"unreadable {self._state_path}: {ex}") from ex

    def _save_state(self) -> None:
        tmp = self._state_path.with_suffix(".tmp")
        state: dict[str, Any] = {"min_seq": self._min_seq, "schema": SCHEMA_VERSION}
        if self._size_ratio is not None:
            state["size_ratio"] = self._size_ratio
        with tmp.open("w") as fh:  # the retention floor must survive a power cut
            fh.write(json.dumps(state))
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self._state_path)
        fsync_dir(self.root)

    def _finish_retention(self) -> None:
        """Finish a retention pass a crash or a failure interrupted (events below ``min_seq``).

        Raises:
            StoreError: the backends' deletes failed (the journal is dropped already).
        """
        if self._min_seq <= 1:
            return
        self.journal.drop_before(self._min_seq)  # first: frees the most space
        with self._append_lock:
            self._batches.keep_above(self._min_seq)
        if self._rows_below(self._min_seq):
            self._on_writer(lambda: self.writer.delete_below(self._min_seq))
            logger.warning("finished an interrupted retention pass below seq %d", self._min_seq)

    def apply_retention(
        self, *, max_age: timedelta | None = None, max_bytes: int | None = None
    ) -> int:
        """Drop the oldest events (by receipt order) past an age or a disk budget.

        ``max_bytes`` is compared with an estimate of the live events' bytes (``index.retention``
        says why and how). The cutoff and the deletes run as one call on the writer thread
        (docs/index.md "Retention path"): after every record queued before it, so the tables
        are current without a flush; the sink's delete commits what was added before it.

        Returns:
            The new lowest kept sequence number.

        Raises:
            StoreError: a repair or a delete failed (the next pass retries from the floor).
        """
        cut = self._on_writer(lambda: self._retain(max_age, max_bytes))
        dropped = self.journal.drop_before(self._min_seq)
        with self._append_lock:
            self._batches.keep_above(self._min_seq)
        if dropped:
            logger.info(
                "retention: kept seq >= %d, dropped %d journal segments",
                self._min_seq,
                len(dropped),
            )
        if max_bytes is not None:
            journal = self.disk_usage()["journal"]
            self._size_ratio = next_ratio(self.tables, cut, journal, self._size_ratio)
            self._save_state()
        return self._min_seq

    def _retain(self, max_age: timedelta | None, max_bytes: int | None) -> Cut:
        """The writer-thread part of ``apply_retention``."""
        if self._min_seq > 1 and self._rows_below(self._min_seq):
            self.writer.delete_below(self._min_seq)  # a pass that failed half-way
        cut = plan_cut(
            self.tables,
            self.disk_usage,
            now=self._clock(),
            floor=self._min_seq,
            next_seq=self.journal.next_seq,
            size_ratio=self._size_ratio,
            max_age=max_age,
            max_bytes=max_bytes,
        )
        if cut.cutoff > self._min_seq:
            # write-ahead: the new floor is saved before anything is deleted, so
            # a crash in between cannot replay the deleted events (the open finishes it).
            self._min_seq = cut.cutoff
            self._save_state()
            self.writer.delete_below(cut.cutoff)
        else:
            self.writer.commit()  # like flush(): a gap is repaired, or raises
        return cut

    def _rows_below(self, seq: int) -> bool:
        return bool(self.tables.read("SELECT count(*) FROM events WHERE seq < ?", (seq,))[0][0])

    def disk_usage(self) -> dict[str, int]:
        """Return bytes on disk per component and in total."""
        return disk_usage(self.root)
