"""Where a retention pass cuts, and what the store takes on disk.

``max_bytes`` is compared with an *estimate* of the bytes the live events take, not with
``disk_usage()["total"]``: DuckDB's file and Tantivy's segments do not shrink when rows are
deleted (a DuckDB checkpoint can even grow the file with no new events), so the raw total would
make every pass delete more old events even when the live data fits. Only the journal really
shrinks (whole segments are dropped) and grows in proportion to the events. So the estimate is
``journal bytes x ratio``: the ratio is measured at the first pass (disk total / journal bytes)
and, after every pass, recomputed as the estimate scaled to the events kept / the journal bytes
left, then saved in ``store.json`` (``size_ratio``). A second pass with the same cap and no new
events removes nothing (same journal, same estimate, already under the cap); new events grow
the journal and push the oldest out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from index.tables import Tables

__all__ = ["Cut", "disk_usage", "next_ratio", "plan_cut"]


@dataclass(frozen=True, slots=True)
class Cut:
    """A retention decision: keep ``seq >= cutoff``; the size figures of the pass."""

    cutoff: int
    estimate: int  # live bytes estimated before the pass (0 without max_bytes)
    live_before: int  # events before the pass (0 without max_bytes)


def disk_usage(root: Path) -> dict[str, int]:
    """Bytes on disk per component of the store at ``root`` and in total."""

    def size(path: Path) -> int:
        # the writer deletes files meanwhile (merged segments, rows file)
        total = 0
        for file in [path] if not path.is_dir() else path.rglob("*"):
            try:
                if file.is_file():
                    total += file.stat().st_size
            except OSError:
                pass
        return total

    usage = {
        "journal": size(root / "journal"),
        "index": size(root / "index"),
        "tables": sum(
            size(p) for p in root.glob("events.duckdb*") if not p.name.endswith(".rows.json")
        ),
    }
    usage["total"] = sum(usage.values())
    return usage


def _live_events(tables: Tables) -> int:
    return int(tables.read("SELECT count(*) FROM events")[0][0])


def plan_cut(
    tables: Tables,
    usage: Callable[[], dict[str, int]],
    *,
    now: float,
    floor: int,
    next_seq: int,
    size_ratio: float | None,
    max_age: timedelta | None,
    max_bytes: int | None,
) -> Cut:
    """Where a pass cuts: past ``max_age`` (receipt time) and past the ``max_bytes`` estimate.

    The estimate without a saved ratio (first size pass) is the measured disk total; with one,
    journal bytes x ``size_ratio``, never more than the measured total.
    """
    cutoff = floor
    if max_age is not None:
        limit = datetime.fromtimestamp(now, UTC) - max_age
        rows = tables.read(
            "SELECT max(seq) FROM events WHERE rt < ?", (limit.replace(tzinfo=None),)
        )
        if rows and rows[0][0] is not None:
            cutoff = max(cutoff, int(rows[0][0]) + 1)
    estimate = live_before = 0
    if max_bytes is not None:
        measured = usage()
        estimate = measured["total"]
        if size_ratio is not None:
            estimate = min(estimate, int(measured["journal"] * size_ratio))
        live_before = _live_events(tables)
        if estimate > max_bytes and live_before:
            drop = int((estimate - max_bytes) / (estimate / live_before)) + 1
            rows = tables.read("SELECT seq FROM events ORDER BY seq LIMIT 1 OFFSET ?", (drop,))
            cutoff = max(cutoff, int(rows[0][0]) if rows else next_seq)
    return Cut(cutoff, estimate, live_before)


def next_ratio(tables: Tables, cut: Cut, journal_bytes: int, last: float | None) -> float | None:
    """The size ratio after a size pass: the estimate scaled to the events kept, per journal
    byte left (the last ratio when either is 0: 0 would disable the cap)."""
    kept = cut.estimate * _live_events(tables) / cut.live_before if cut.live_before else 0.0
    return kept / journal_bytes if kept > 0 and journal_bytes > 0 else last
