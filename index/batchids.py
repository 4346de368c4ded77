"""The batch ids an event store holds (dedup of an agent's retries), and those in flight.

A batch id is *durable* once the journal fsync covering its record ended (the journal's group
commit tells ``durable`` in journal order, before the batch is acknowledged); until then it is
*in flight*: a repeat waits for the first copy's outcome instead of storing it twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from index.journal import JournalRecord, JournalTicket

__all__ = ["BatchIds", "Key"]

Key = tuple[str, str]
"""(endpoint uuid in lower case, batch id)."""


def key_of(record: JournalRecord) -> Key | None:
    """The dedup key of a journal record (None without a batch id)."""
    if record.batch_id is None:
        return None
    return (record.endpoint.get("uuid", "").lower(), record.batch_id)


class BatchIds:
    """Durable and in-flight batch ids (thread-safe; the journal's committer never waits on
    anything else here)."""

    def __init__(self, keys: Iterable[tuple[str, str, int, int]]) -> None:
        self._lock = threading.Lock()
        self._durable: dict[Key, tuple[int, int]] = {
            (ep, bid): (first, count) for ep, bid, first, count in keys
        }
        self._inflight: dict[Key, JournalTicket] = {}

    def get(self, key: Key) -> tuple[int, int] | None:
        """``(first seq, count)`` of a durable batch (no lock: a dict read is atomic)."""
        return self._durable.get(key)

    def lookup(self, key: Key) -> tuple[tuple[int, int] | None, JournalTicket | None]:
        """The durable batch, else the ticket of the copy in flight."""
        with self._lock:
            return self._durable.get(key), self._inflight.get(key)

    def writing(self, key: Key, ticket: JournalTicket) -> None:
        """A copy of the batch was written to the journal and waits for its fsync."""
        with self._lock:
            self._inflight[key] = ticket

    def refused(self, key: Key, ticket: JournalTicket) -> None:
        """That copy's fsync failed: a retry stores it again."""
        with self._lock:
            if self._inflight.get(key) is ticket:
                del self._inflight[key]

    def durable(self, records: Iterable[JournalRecord]) -> None:
        """Records made durable (or replayed on open): their batch ids are now stored."""
        with self._lock:
            for record in records:
                key = key_of(record)
                if key is None:
                    continue
                self._durable[key] = (record.first_seq, record.count)
                ticket = self._inflight.get(key)
                if ticket is not None and ticket.record is record:
                    del self._inflight[key]

    def keep_above(self, min_seq: int) -> None:
        """Forget the batches retention deleted (every event below ``min_seq``)."""
        with self._lock:
            self._durable = {k: v for k, v in self._durable.items() if sum(v) > min_seq}
