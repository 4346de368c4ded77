"""Benchmark cluster mode: ingest through one and two front-ends into two ClickHouse shards,
and search latency on ClickHouse vs the embedded store (the queries of ``search.py``).

Starts two ClickHouse servers on loopback (Debian's ``clickhouse-server``, as the cluster test
tier does), generates ``--events`` events with ``search.py``'s generator (not timed), then:

* ingest, 1 front-end: the first ``--window`` events go through one front-end process (an
  ``EventStore``: journal fsync + local index in its writer child, as a cluster front-end
  runs, and its ``Shipper`` shipping to both shards), timed until ClickHouse confirmed the last
  event. CPU per event is the front-end's process tree (ClickHouse separately: its servers'
  CPU over the same interval);
* ingest, 2 front-ends: the next ``--window`` events through two such processes in parallel
  (alternate batches);
* bulk load (not a front-end path, not timed as ingest): every event goes into one embedded
  ``EventStore`` by ``EventStore.append`` in batches of ``--batch`` (the embedded store's own
  path, as ``search.py`` ingests), and the events the front-ends did not carry go into
  ClickHouse as the rows the shipper builds (``record_rows`` of that store's journal records,
  front-end name ``bulk``), in large ``INSERT`` blocks per shard from ``--workers`` processes.
  ClickHouse then holds every event exactly once (checked), the embedded store the same events;
* search: p50/p95 of ``search.py``'s queries through ``ClusterEvents`` (count, and search of 100
  events) against the same queries on the embedded store.

``--search-only`` reuses a loaded ``--dir`` (restarts ClickHouse on its data) and runs the
search part only. Every figure is printed with the load average of the machine.

Run: ``nice -n 10 .venv/bin/python benchmarks/cluster.py --events 5000000 --dir /tmp/heron-cluster``
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.procstat import tree_cpu_seconds
from benchmarks.search import (
    EXES,
    WORDS,
    Generator,
    _ms,
    _pp,
    pregenerate,
    read_batches,
)
from benchmarks.search import ingest as embedded_ingest
from index import EndpointRef, EventStore
from index.chship import Shipper
from index.chstore import ClusterEvents
from index.clickhouse import DATABASE, ClickHouse, as_int, create_schema, record_rows, shard_of
from index.journal import Journal
from tests.cluster.servers import start_clickhouse

START = datetime(2026, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=30)
BULK_ROWS = 50_000  # rows per bulk INSERT block (one shard)


def load() -> str:
    """The machine's load average (1, 5, 15 min), printed next to every figure."""
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def frontend(
    name: str,
    root: str,
    feed: str,
    batches: tuple[int, int],
    part: int,
    parts: int,
    urls: list[str],
    out: Any,
) -> None:
    """One front-end: append its share of batches ``[lo, hi)``, ship, wait for ClickHouse."""
    logging.basicConfig(level=logging.WARNING)
    store = EventStore(Path(root), heap_size=256_000_000, index_process=True)
    shipper = Shipper(
        store.journal,
        [ClickHouse(u) for u in urls],
        frontend=name,
        state_path=Path(root) / "ship.json",
    )
    shipper.start()
    lo, hi = batches
    t0, c0 = time.perf_counter(), tree_cpu_seconds()
    done = 0
    for i, (host, events) in enumerate(read_batches(Path(feed))):
        if i >= hi:
            break
        if i < lo or (i - lo) % parts != part:
            continue
        store.append(events, endpoint=EndpointRef(f"uuid-{host}", host), batch_id=str(i))
        shipper.notify()
        done += len(events)
    store.flush(timeout=None)
    shipper.wait_shipped(store.journal.next_seq - 1, timeout=3600)
    out.put((name, done, time.perf_counter() - t0, tree_cpu_seconds() - c0))
    shipper.stop()
    store.close()


def ingest(
    label: str,
    base: Path,
    feed: Path,
    batches: tuple[int, int],
    parts: int,
    urls: list[str],
    ch_pids: list[int],
) -> int:
    """Batches ``[lo, hi)`` through ``parts`` front-end processes; print rate and CPU."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    ch0 = sum(tree_cpu_seconds(pid) for pid in ch_pids)
    t0 = time.perf_counter()
    procs = [
        ctx.Process(
            target=frontend,
            args=(
                f"{label}-fe{p}",
                str(base / f"{label}-fe{p}"),
                str(feed),
                batches,
                p,
                parts,
                urls,
                out,
            ),
        )
        for p in range(parts)
    ]
    for proc in procs:
        proc.start()
    results = [out.get() for _ in procs]
    wall = time.perf_counter() - t0
    for proc in procs:
        proc.join()
    ch_cpu = sum(tree_cpu_seconds(pid) for pid in ch_pids) - ch0
    total = sum(r[1] for r in results)
    fe_cpu = sum(r[3] for r in results)
    print(
        f"ingest {parts} front-end(s), batches {batches[0]}-{batches[1] - 1} "
        f"(front-end path: journal fsync + local index + shipper): {total:,} events in "
        f"{wall:.1f} s = {total / wall:,.0f} events/s wall, durable and confirmed by "
        f"ClickHouse; CPU {fe_cpu / total * 1e6:.0f} us/event in the front-end(s), "
        f"{ch_cpu / total * 1e6:.0f} us/event in ClickHouse ({load()})",
        flush=True,
    )
    return total


def bulk_worker(
    journal_dir: str, seqs: tuple[int, int], skip_below: int, urls: list[str], out: Any
) -> None:
    """Insert the shipper's rows (``record_rows``, front-end ``bulk``) of the journal records
    whose first seq is in ``[lo, hi)``, skipping batches below ``skip_below`` (the front-ends
    carried those), in blocks of ``BULK_ROWS`` per shard."""
    shards = [ClickHouse(u, timeout=600) for u in urls]
    journal = Journal(Path(journal_dir), fsync=False)
    lo, hi = seqs
    pending: list[list[dict[str, object]]] = [[] for _ in shards]
    sent = 0

    def flush(i: int) -> None:
        nonlocal sent
        shards[i].insert_rows(f"{DATABASE}.events_local", pending[i])
        sent += len(pending[i])
        pending[i] = []

    for record in journal.read(after_seq=lo - 1):
        if record.first_seq >= hi:
            break
        if record.first_seq < lo or int(record.batch_id or 0) < skip_below:
            continue
        shard = shard_of(record.endpoint.get("uuid", ""), len(shards))
        pending[shard].extend(record_rows(record, "bulk"))
        if len(pending[shard]) >= BULK_ROWS:
            flush(shard)
    for i in range(len(shards)):
        flush(i)
    journal.close()
    out.put((sent, time.process_time()))


def bulk_clickhouse(
    journal_dir: Path, skip_below: int, urls: list[str], workers: int, ch_pids: list[int]
) -> int:
    """``bulk_worker`` over ``workers`` processes (disjoint seq ranges of the journal)."""
    journal = Journal(journal_dir, fsync=False)
    last = journal.next_seq
    journal.close()
    step = -(-(last - 1) // workers)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=bulk_worker,
            args=(str(journal_dir), (1 + w * step, 1 + (w + 1) * step), skip_below, urls, out),
        )
        for w in range(workers)
    ]
    ch0 = sum(tree_cpu_seconds(pid) for pid in ch_pids)
    t0 = time.perf_counter()
    for proc in procs:
        proc.start()
    results = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    wall = time.perf_counter() - t0
    ch_cpu = sum(tree_cpu_seconds(pid) for pid in ch_pids) - ch0
    sent, cpu = sum(r[0] for r in results), sum(r[1] for r in results)
    print(
        f"bulk path into ClickHouse: {sent:,} events as the shipper's rows (record_rows of the "
        f"embedded store's journal, front-end 'bulk') in {BULK_ROWS:,}-row INSERT blocks from "
        f"{workers} processes: {wall:.1f} s = {sent / wall:,.0f} events/s; CPU "
        f"{cpu / max(sent, 1) * 1e6:.0f} us/event building rows, "
        f"{ch_cpu / max(sent, 1) * 1e6:.0f} us/event in ClickHouse ({load()})",
        flush=True,
    )
    return sent


def queries(
    gen: Generator, rng: random.Random
) -> list[tuple[str, Callable[[], tuple[str, dict[str, Any]]]]]:
    sha = [b[1].split("SHA256=")[1].split(",")[0] for b in gen.binaries]

    def hour() -> dict[str, Any]:
        at = START + SPAN * rng.random()
        return {"since": at, "until": at + timedelta(hours=1)}

    return [
        ("term sha256", lambda: (f"sha256:{rng.choice(sha)}", {})),
        ("term EventID+host", lambda: (f"EventID:1 AND Computer:{rng.choice(gen.hosts)}", {})),
        (
            "phrase CommandLine",
            lambda: (f'CommandLine:"{rng.choice(WORDS[:12])} {rng.choice(WORDS[:12])}"', {}),
        ),
        ("wildcard Image", lambda: (f"Image:*{rng.choice(EXES)[:5]}*", {})),
        ("range+sort 1h newest", lambda: ("", hour())),
        (
            "range+sort EventID",
            lambda: (
                f"ts:[{(START + SPAN * rng.random()).isoformat()} TO {(START + SPAN).isoformat()}]"
                " AND EventID:4688",
                {},
            ),
        ),
    ]


def _times(page: Any) -> list[str]:
    return [e["Event"]["System"]["TimeCreated"]["SystemTime"] for e in page.events]


def compare_search(embedded: EventStore, cluster: ClusterEvents, gen: Generator, runs: int) -> None:
    """p50/p95 of count, first page (100 events) and second page (by the first's cursor)."""
    print(
        f"{'query (p50/p95 ms)':22s} {'embedded count':>15s} {'ClickHouse count':>17s} "
        f"{'embedded page 1':>16s} {'ClickHouse page 1':>18s} {'embedded page 2':>16s} "
        f"{'ClickHouse page 2':>18s}  hits (last draw)"
    )
    stores = (embedded, cluster)
    for name, draw in queries(gen, random.Random(7)):
        params = [draw() for _ in range(runs)]
        results = []
        for store in stores:
            results.append([_ms(lambda q=q, kw=kw, s=store: s.count(q, **kw)) for q, kw in params])
        for store in stores:
            results.append(
                [_ms(lambda q=q, kw=kw, s=store: s.search(q, limit=100, **kw)) for q, kw in params]
            )
        for store in stores:
            cursors = [(q, kw, store.search(q, limit=100, **kw).next_cursor) for q, kw in params]
            results.append(
                [
                    _ms(lambda q=q, kw=kw, c=c, s=store: s.search(q, limit=100, cursor=c, **kw))
                    for q, kw, c in cursors
                    if c is not None
                ]
                or [0.0]
            )
        q, kw = params[-1]
        hits = (embedded.count(q, **kw), cluster.count(q, **kw))
        # Same events in the same order (event times; ties may differ in order of identity).
        same = _times(embedded.search(q, limit=100, **kw)) == _times(
            cluster.search(q, limit=100, **kw)
        )
        print(
            f"{name:22s} {_pp(results[0]):>15s} {_pp(results[1]):>17s} "
            f"{_pp(results[2]):>16s} {_pp(results[3]):>18s} {_pp(results[4]):>16s} "
            f"{_pp(results[5]):>18s}  {hits[0]}/{hits[1]}"
            f"{'' if same else ' FIRST PAGES DIFFER'} ({load()})",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5_000_000, help="events in both stores")
    parser.add_argument(
        "--window",
        type=int,
        default=100_000,
        help="events ingested through the front-ends, per configuration (1 and 2 front-ends)",
    )
    parser.add_argument("--dir", type=Path, default=Path("/tmp/heron-cluster"))
    parser.add_argument("--batch", type=int, default=1000, help="events per agent batch")
    parser.add_argument("--runs", type=int, default=10, help="parameter draws per query")
    parser.add_argument("--workers", type=int, default=2, help="bulk ClickHouse load processes")
    parser.add_argument(
        "--search-only", action="store_true", help="reuse the data a previous run loaded in --dir"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    gen = Generator(42, 500, START, SPAN, args.events)
    marker = args.dir / "loaded.json"
    if args.search_only:
        loaded = json.loads(marker.read_text())
        if loaded["events"] != args.events:
            parser.error(f"{args.dir} holds {loaded['events']} events, not {args.events}")
    else:
        if 2 * args.window > args.events:
            parser.error("--window must be at most half of --events")
        shutil.rmtree(args.dir, ignore_errors=True)
        args.dir.mkdir(parents=True)
    nodes = start_clickhouse(args.dir / "ch", 2)
    try:
        urls = [n.url for n in nodes]
        shards = [ClickHouse(u, timeout=3600) for u in urls]
        if not args.search_only:
            load_all(args, gen, shards, [n.proc.pid for n in nodes if n.proc is not None])
            marker.write_text(json.dumps({"events": args.events, "window": args.window}))
        rows = sum(as_int(s.scalar("SELECT count() FROM heron.events_local")) for s in shards)
        size = sum(
            as_int(
                s.scalar(
                    "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND "
                    "table = 'events_local'"
                )
            )
            for s in shards
        )
        print(f"ClickHouse: {rows:,} rows, {size / rows:.0f} bytes/event on disk (both shards)")
        with EventStore(args.dir / "embedded", index_process=False) as embedded:
            count = embedded.count()
            print(f"embedded store: {count:,} events", flush=True)
            if count != rows or rows != args.events:
                raise SystemExit(f"stores differ: {count} embedded, {rows} in ClickHouse")
            compare_search(embedded, ClusterEvents(shards[0]), gen, args.runs)
    finally:
        for node in nodes:
            node.stop()
    return 0


def load_all(
    args: argparse.Namespace, gen: Generator, shards: list[ClickHouse], ch_pids: list[int]
) -> None:
    """Generate, ingest the two front-end windows, bulk-load the rest (module docstring)."""
    feed = args.dir / "feed.zst"
    t0 = time.perf_counter()
    pregenerate(gen, args.events, args.batch, feed)
    print(f"generated {args.events:,} events in {time.perf_counter() - t0:.0f} s ({load()})")
    urls = [s.url for s in shards]
    create_schema(shards, "heron")
    per = -(-args.window // args.batch)  # batches per front-end window
    ingest("one", args.dir, feed, (0, per), 1, urls, ch_pids)
    ingest("two", args.dir, feed, (per, 2 * per), 2, urls, ch_pids)
    print(
        f"embedded store: all {args.events:,} events by EventStore.append (batches of "
        f"{args.batch}, journal fsync + Tantivy in its writer child + DuckDB) ({load()})",
        flush=True,
    )
    store = EventStore(
        args.dir / "embedded", heap_size=256_000_000, index_threads=1, index_process=True
    )
    try:
        embedded_ingest(store, feed, args.events, args.batch)
        t0 = time.perf_counter()
        segments = store.merge_segments()
        print(f"merge: {segments} segments in {time.perf_counter() - t0:.1f} s ({load()})")
    finally:
        store.close()
    bulk_clickhouse(args.dir / "embedded" / "journal", 2 * per, urls, args.workers, ch_pids)
    t0 = time.perf_counter()
    for shard in shards:
        shard.execute(f"OPTIMIZE TABLE {DATABASE}.events_local FINAL")
    parts = [
        as_int(s.scalar("SELECT count() FROM system.parts WHERE active AND table = 'events_local'"))
        for s in shards
    ]
    print(
        f"ClickHouse OPTIMIZE FINAL: {time.perf_counter() - t0:.0f} s, active parts per shard "
        f"{parts} ({load()})",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
