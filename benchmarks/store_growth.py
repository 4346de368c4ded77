"""Per-event CPU of the event store's ingest path as the store grows (issue 18's soak).

Opens (or reopens: the directory is kept, so a later run starts where the last stopped) an
``EventStore`` with the manager's options for ``--budget-mib`` (writer child process, DuckDB
memory limit, Tantivy heap, index queue bound) and appends batches of real Sysmon events from
``--threads`` appender threads as fast as the store takes them, until the store holds
``--until`` events. Every ``--window`` events it prints the indexed events/s and the CPU per
event of this process (journal, projection, DuckDB, reader reloads) and of the Tantivy writer
child (and, of the child's, its segment merges), with the segment count and the box load.
Compare the first windows (a small store) with the last (a large one): the cost per event must
not grow with the store.

    nice -n 10 .venv/bin/python benchmarks/store_growth.py --dir /tmp/heron-growth \
        [--until 10000000] [--window 500000] [--batch 1000] [--threads 4] [--budget-mib 4096]

``--measure SECONDS`` instead measures one window of that length at the current size.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import load_events  # noqa: E402
from benchmarks.procstat import ThreadCpu  # noqa: E402
from index import EventStore  # noqa: E402
from index.results import EndpointRef  # noqa: E402


def store_options(budget: int) -> dict[str, Any]:
    """The store options the manager derives from its memory budget (core/config.py)."""
    return {
        "memory_limit": f"{max(budget // 4, 64 << 20) >> 20}MB",
        "heap_size": min(max(budget // 32, 32 << 20), 256 << 20),
        "queue_bytes": max(budget // 8, 32 << 20),
    }


def cpu(proc: psutil.Process) -> float:
    return float(sum(proc.cpu_times()[:2]))


def indexed(store: EventStore) -> int:
    stats = store.writer.stats()
    return min(stats.tantivy_max, stats.tables_max)


class Appenders:
    """``threads`` threads appending batches back to back (the store's back-pressure paces)."""

    def __init__(self, store: EventStore, events: list[dict[str, Any]], batch: int, n: int):
        self.store, self.events, self.batch = store, events, batch
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)
        ]

    def _run(self, i: int) -> None:
        endpoint = EndpointRef(str(uuid.UUID(int=i + 1)), hostname=f"host-{i}")
        offset = i * self.batch
        while not self.stop.is_set():
            start = offset % len(self.events)
            chunk = (self.events * 2)[start : start + self.batch]
            offset += self.batch
            self.store.append(chunk, endpoint=endpoint, batch_id=str(uuid.uuid4()))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--dir", type=Path, required=True, help="store directory (kept)")
    ap.add_argument("--until", type=int, default=10_000_000, help="stop at this many events")
    ap.add_argument("--window", type=int, default=500_000, help="events per printed window")
    ap.add_argument("--measure", type=float, default=0.0, help="one window of SECONDS instead")
    ap.add_argument("--batch", type=int, default=1000, help="events per append")
    ap.add_argument("--threads", type=int, default=4, help="appender threads")
    ap.add_argument("--budget-mib", type=int, default=4096, help="manager memory budget")
    args = ap.parse_args()

    events = load_events(5000)
    me = psutil.Process()
    store = EventStore(args.dir, **store_options(args.budget_mib << 20))
    try:
        store.flush(timeout=None)
        child = psutil.Process(store.writer.pid) if store.writer.pid else None
        start_count = indexed(store)
        print(
            f"store {args.dir}: {start_count:,} events, pid {os.getpid()}, "
            f"writer child {store.writer.pid}",
            flush=True,
        )
        appenders = Appenders(store, events, args.batch, args.threads)
        appenders.start()
        last_n, last_t = start_count, time.monotonic()
        merges = ThreadCpu(os.getpid(), "merge_thread")
        last_me, last_child, last_merge = cpu(me), cpu(child) if child else 0.0, merges.seconds()
        first: float | None = None
        while True:
            time.sleep(0.5)
            n, now = indexed(store), time.monotonic()
            done = n >= args.until if not args.measure else now - last_t >= args.measure
            if n - last_n < args.window and not done:
                continue
            c_me, c_child, c_merge = cpu(me), cpu(child) if child else 0.0, merges.seconds()
            dn = max(1, n - last_n)
            per = (c_me - last_me + c_child - last_child) / dn * 1e6
            first = per if first is None else first
            print(
                f"{n:>12,} events  {dn / (now - last_t):>7,.0f} ev/s  "
                f"CPU/event {per:6.1f} us (manager {(c_me - last_me) / dn * 1e6:5.1f}, "
                f"writer {(c_child - last_child) / dn * 1e6:5.1f}, of which merges "
                f"{(c_merge - last_merge) / dn * 1e6:5.1f})  "
                f"vs first {100 * (per / first - 1):+5.1f}%  "
                f"segments {store.stats()['segments']}  load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            last_n, last_t, last_me, last_child, last_merge = n, now, c_me, c_child, c_merge
            if done:
                break
        appenders.join()
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
