"""The journal shipper: a front-end's journal records into ClickHouse, in order, exactly once.

A front-end acknowledges a batch once its journal fsync'd it (as in embedded mode); this
thread then ships the records to the shards' ``events_local`` tables. Exactly once:

* ``ship.json`` holds, per shard, the last sequence number whose insert ClickHouse confirmed
  (written atomically after every confirmed round);
* an insert that was in flight when the process died may or may not have landed (a block
  over several day partitions may even have landed in part), so on start the shipper waits
  until no insert of this front-end still runs on a shard (inserts are named by ``query_id``
  in ``system.processes``: a killed process's last block may still be landing), then asks each
  shard which of this front-end's sequence numbers above its mark exist, and skips those;
* an agent retry that reached another front-end (same endpoint, batch id, index) is folded by
  ``ReplacingMergeTree`` (see ``index.clickhouse``).

Replicated shards (``index.chreplica``): the wait and the probe run on every replica that
answers (a row that landed is on the replica that took the insert, until the others fetch
it). A failed insert into a replicated shard is re-sent as the very same rows, to whichever
replica answers next: if the first attempt was committed (its replica may be down before the
others fetched the part), ZooKeeper's block deduplication drops the copy.

The lag (journal events not yet confirmed) is a metric and a health state.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from index.clickhouse import (
    DATABASE,
    ClickHouse,
    ClickHouseError,
    ClickHouseUnreachable,
    as_int,
    record_rows,
    shard_of,
)
from index.journal import Journal

__all__ = ["Shipper"]

logger = logging.getLogger(__name__)

_ROUND_ROWS = 20_000  # rows read from the journal per round (bounded memory)
LAG_WARN = 100_000  # events behind: health "lagging"
INFLIGHT_WAIT = 60.0  # seconds a restart waits for an insert the previous process left running


@dataclass(slots=True)
class _Round:
    """One round's rows per shard, and which shards confirmed them."""

    start: int
    last: int
    rows: list[list[dict[str, Any]]]
    done: list[bool]


class Shipper:
    """Ship ``journal`` to ``shards`` as ``frontend``; bookkeeping in ``state_path``."""

    def __init__(
        self,
        journal: Journal,
        shards: Sequence[ClickHouse],
        *,
        frontend: str,
        state_path: Path,
        retry_interval: float = 1.0,
    ) -> None:
        if not shards:
            raise ValueError("the shipper needs at least one ClickHouse shard")
        self._journal = journal
        self._shards = list(shards)
        self.frontend = frontend
        self._state_path = state_path
        self._retry = retry_interval
        self._marks = self._load()
        self._present: list[set[int]] | None = None  # seqs found above the marks on start
        self._resend: _Round | None = None  # a round whose replicated insert must be re-sent
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.shipped = 0

    # -- bookkeeping ---------------------------------------------------------------

    def _load(self) -> list[int]:
        try:
            data = json.loads(self._state_path.read_text())
        except FileNotFoundError:
            return [0] * len(self._shards)
        marks = [int(m) for m in data["marks"]]
        if data.get("frontend") != self.frontend or len(marks) != len(self._shards):
            raise ValueError(
                f"{self._state_path} was written for another front-end or shard "
                "count; resharding is not supported"
            )
        return marks

    def _save(self) -> None:
        tmp = self._state_path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump({"frontend": self.frontend, "marks": self._marks}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._state_path)

    def _insert_prefix(self) -> str:
        return f"heron-ship-{self.frontend}-"

    def _wait_inserts_done(self, shard: ClickHouse) -> None:
        """Wait until no insert of ours still runs on `shard`.

        A front-end killed during an insert may have sent the whole block: the server then
        finishes it after the restart. Probing before it ends would miss rows that land later,
        and ship them twice.
        """
        deadline = time.monotonic() + INFLIGHT_WAIT
        prefix = _quote(self._insert_prefix())
        sql = f"SELECT count() FROM system.processes WHERE startsWith(query_id, '{prefix}')"
        while as_int(shard.scalar(sql)):  # 64-bit counts come back as JSON strings
            if time.monotonic() > deadline:
                raise ClickHouseError(f"{shard.url}: an earlier insert of ours is still running")
            time.sleep(0.05)

    def _reconcile(self) -> list[set[int]]:
        """Which of our sequence numbers above each shard's mark already landed (on any of
        its replicas that answers; one must)."""
        found: list[set[int]] = []
        for shard, mark in zip(self._shards, self._marks, strict=True):
            seqs: set[int] = set()
            answered = 0
            for node in shard.replicas:
                try:
                    self._wait_inserts_done(node)
                    _, rows = node.rows(
                        f"SELECT seq FROM {DATABASE}.events_local WHERE frontend = "
                        f"'{_quote(self.frontend)}' AND seq > {int(mark)}"
                    )
                except ClickHouseUnreachable:
                    if len(shard.replicas) == 1:
                        raise
                    continue
                answered += 1
                seqs.update(as_int(r[0]) for r in rows)
            if not answered:
                raise ClickHouseUnreachable(f"{shard.url}: no replica of the shard answers")
            found.append(seqs)
        return found

    # -- shipping ------------------------------------------------------------------

    @property
    def shards(self) -> list[ClickHouse]:
        return list(self._shards)

    @property
    def shipped_seq(self) -> int:
        """Every journal event at or below this sequence number is in ClickHouse."""
        return min(self._marks)

    def lag(self) -> int:
        """Journal events not yet confirmed by ClickHouse."""
        return max(0, self._journal.next_seq - 1 - self.shipped_seq)

    def health(self) -> dict[str, object]:
        lag = self.lag()
        state = "failing" if self.last_error else ("lagging" if lag > LAG_WARN else "ok")
        return {
            "state": state,
            "lag": lag,
            "shipped_seq": self.shipped_seq,
            "error": self.last_error,
        }

    def ship_once(self) -> int:
        """Ship one round (at most ``_ROUND_ROWS`` journal events); return events advanced.

        Raises:
            ClickHouseError: a shard refused or was unreachable (the round is retried).
        """
        if self._resend is not None:
            return self._send(self._resend)
        if self._present is None:
            self._present = self._reconcile()
        start = self.shipped_seq
        per_shard: list[list[dict[str, Any]]] = [[] for _ in self._shards]
        last = start
        for record in self._journal.read(after_seq=start):
            shard = shard_of(record.endpoint.get("uuid", ""), len(self._shards))
            mark, present = self._marks[shard], self._present[shard]
            per_shard[shard].extend(
                row
                for row in record_rows(record, self.frontend)
                if row["seq"] > mark and row["seq"] not in present
            )
            last = record.last_seq
            if last - start >= _ROUND_ROWS:
                break
        if last == start:
            return 0
        return self._send(_Round(start, last, per_shard, [not rows for rows in per_shard]))

    def _send(self, rnd: _Round) -> int:
        for i, rows in enumerate(rnd.rows):
            if rnd.done[i]:
                continue
            query_id = f"{self._insert_prefix()}{rnd.last}-{i}-{os.getpid()}"
            try:
                self._shards[i].insert_rows(f"{DATABASE}.events_local", rows, query_id=query_id)
            except ClickHouseError:
                # replicated: the same rows again (block dedup); else reconcile and rebuild
                self._resend = rnd if len(self._shards[i].replicas) > 1 else None
                raise
            rnd.done[i] = True
        self._resend = None
        # Every shard now holds everything of ours up to ``last``.
        self._marks = [max(m, rnd.last) for m in self._marks]
        if self._present is not None:
            self._present = [{s for s in p if s > rnd.last} for p in self._present]
        self._save()
        self.shipped += sum(len(rows) for rows in rnd.rows)
        return rnd.last - rnd.start

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="heron-ch-shipper", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """New journal records: ship now rather than at the next poll."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.ship_once() > 0  # NOTE: no progress: wait for a notify/poll
                self.last_error = None
            except (ClickHouseError, OSError) as ex:
                if self.last_error is None:
                    logger.warning("shipping to ClickHouse failed (retrying): %s", ex)
                self.last_error = str(ex)
                self._present = None  # an insert may have landed: ask again
                busy = False
            if not busy:
                self._wake.wait(self._retry)
                self._wake.clear()

    def wait_shipped(self, seq: int, timeout: float = 60.0) -> bool:
        """Wait until every event up to ``seq`` is confirmed (tests, drains)."""
        deadline = time.monotonic() + timeout
        while self.shipped_seq < seq:
            if time.monotonic() > deadline:
                return False
            self._wake.set()
            time.sleep(0.05)
        return True

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")
