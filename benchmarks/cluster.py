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
  path, as ``search.py`` ingests); meanwhile ``--workers`` processes put the events the
  front-ends did not carry into ClickHouse as the rows the shipper builds: each batch becomes
  the journal record a front-end named ``bulk`` would write (events finalized as
  ``EventStore.append`` does) and ``record_rows`` makes its rows, inserted in large blocks per
  shard. ClickHouse then holds every event exactly once (checked), the embedded store the same
  events;
* search: p50/p95 of ``search.py``'s queries through ``ClusterEvents`` (count, and search of 100
  events) against the same queries on the embedded store.

``--search-only`` reuses a loaded ``--dir`` (restarts ClickHouse on its data) and runs the
search part only; ``--resume`` reuses the feed and the windows' rows of a run stopped after
them. Every figure is printed with the load average of the machine.

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
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import zstandard

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
from index.chstore import FIRST_WINDOW, ClusterEvents
from index.clickhouse import DATABASE, ClickHouse, as_int, create_schema, record_rows, shard_of
from index.finalize import finalize_event
from index.journal import JournalRecord
from index.results import rfc3339_ns
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


def _frames(feed: Path, pick: Callable[[int], bool]) -> Iterator[tuple[int, str, list[Any]]]:
    """``(index, host, events)`` of the feed's batches that ``pick`` keeps (others skipped
    undecoded)."""
    dctx = zstandard.ZstdDecompressor()
    with feed.open("rb") as fh:
        i = 0
        while head := fh.read(4):
            size = struct.unpack("<I", head)[0]
            if pick(i):
                body = orjson.loads(dctx.decompress(fh.read(size)))
                yield i, body["host"], body["events"]
            else:
                fh.seek(size, os.SEEK_CUR)
            i += 1


def bulk_worker(
    feed: str, skip_below: int, batch: int, worker: int, workers: int, urls: list[str], out: Any
) -> None:
    """Insert the shipper's rows of batches ``skip_below..`` (every ``workers``-th from
    ``worker``) into their shards in blocks of ``BULK_ROWS``: each batch becomes the journal
    record a front-end ``bulk`` writes (events finalized as ``EventStore.append`` does, seqs
    from the batch index), and ``record_rows`` — the shipper's row builder — makes the rows."""
    shards = [ClickHouse(u, timeout=600) for u in urls]
    pending: list[list[dict[str, object]]] = [[] for _ in shards]
    sent = 0

    def flush(i: int) -> None:
        nonlocal sent
        shards[i].insert_rows(f"{DATABASE}.events_local", pending[i])
        sent += len(pending[i])
        pending[i] = []

    pick = lambda i: i >= skip_below and i % workers == worker  # noqa: E731
    for i, host, events in _frames(Path(feed), pick):
        endpoint = EndpointRef(f"uuid-{host}", host)
        rt_ns = time.time_ns()
        receipt, edr = rfc3339_ns(rt_ns), endpoint.to_edr()
        finals = [finalize_event(ev, k, edr, receipt, False)[0] for k, ev in enumerate(events)]
        record = JournalRecord(i * batch + 1, len(finals), asdict(endpoint), str(i), rt_ns, finals)
        shard = shard_of(endpoint.uuid, len(shards))
        pending[shard].extend(record_rows(record, "bulk"))
        if len(pending[shard]) >= BULK_ROWS:
            flush(shard)
    for i in range(len(shards)):
        flush(i)
    out.put((sent, time.process_time(), time.perf_counter()))


def start_bulk(
    feed: Path, skip_below: int, batch: int, urls: list[str], workers: int
) -> tuple[list[Any], Any]:
    """Start ``bulk_worker`` in ``workers`` processes (disjoint batches)."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=bulk_worker, args=(str(feed), skip_below, batch, w, workers, urls, out))
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    return procs, out


def finish_bulk(procs: list[Any], out: Any, t0: float, ch0: float, ch_pids: list[int]) -> None:
    results = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    # until the last worker ended, not the embedded load (perf_counter: CLOCK_MONOTONIC)
    wall = max(r[2] for r in results) - t0
    ch_cpu = sum(tree_cpu_seconds(pid) for pid in ch_pids) - ch0
    sent, cpu = sum(r[0] for r in results), sum(r[1] for r in results)
    print(
        f"bulk path into ClickHouse: {sent:,} events as the shipper's rows (record_rows of "
        f"journal records built as EventStore.append builds them, front-end 'bulk') in "
        f"{BULK_ROWS:,}-row INSERT blocks from {len(procs)} processes, beside the embedded "
        f"load: {wall:.1f} s = {sent / wall:,.0f} events/s; CPU "
        f"{cpu / max(sent, 1) * 1e6:.0f} us/event building rows, "
        f"{ch_cpu / max(sent, 1) * 1e6:.0f} us/event in ClickHouse ({load()})",
        flush=True,
    )


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
    parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse --dir's feed and front-end windows (a run stopped after them)",
    )
    parser.add_argument(
        "--first-window",
        type=float,
        default=FIRST_WINDOW,
        help="ClusterEvents' first window in pages (1e12: one sorted query over every match, "
        "as before the time-window descent)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    gen = Generator(42, 500, START, SPAN, args.events)
    marker = args.dir / "loaded.json"
    if args.search_only:
        loaded = json.loads(marker.read_text())
        if loaded["events"] != args.events:
            parser.error(f"{args.dir} holds {loaded['events']} events, not {args.events}")
    elif not args.resume:
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
            print(f"ClickHouse pages: first window {args.first_window:g} pages ({load()})")
            cluster = ClusterEvents(shards[0], first_window=args.first_window)
            compare_search(embedded, cluster, gen, args.runs)
    finally:
        for node in nodes:
            node.stop()
    return 0


def _count(shards: list[ClickHouse], where: str) -> int:
    return sum(
        as_int(s.scalar(f"SELECT count() FROM {DATABASE}.events_local WHERE {where}"))
        for s in shards
    )


def load_all(
    args: argparse.Namespace, gen: Generator, shards: list[ClickHouse], ch_pids: list[int]
) -> None:
    """Generate, ingest the two front-end windows, bulk-load the rest (module docstring).

    ``--resume``: the feed and the windows' rows are there (a run stopped after them).
    """
    feed = args.dir / "feed.zst"
    urls = [s.url for s in shards]
    per = -(-args.window // args.batch)  # batches per front-end window
    if args.resume:
        rows = _count(shards, "frontend != 'bulk'")
        if rows != 2 * per * args.batch:
            raise SystemExit(f"--resume: ClickHouse holds {rows} rows, not the two windows")
        for shard in shards:  # what an interrupted bulk load left (18.16 has ALTER … DELETE)
            shard.execute(f"ALTER TABLE {DATABASE}.events_local DELETE WHERE frontend = 'bulk'")
        deadline = time.monotonic() + 3600
        while _count(shards, "frontend = 'bulk'") and time.monotonic() < deadline:
            time.sleep(1)
        shutil.rmtree(args.dir / "embedded", ignore_errors=True)
        print(f"resumed: feed and the front-end windows' {rows:,} rows kept ({load()})")
    else:
        t0 = time.perf_counter()
        pregenerate(gen, args.events, args.batch, feed)
        print(f"generated {args.events:,} events in {time.perf_counter() - t0:.0f} s ({load()})")
        create_schema(shards, "heron")
        ingest("one", args.dir, feed, (0, per), 1, urls, ch_pids)
        ingest("two", args.dir, feed, (per, 2 * per), 2, urls, ch_pids)
    print(
        f"embedded store: all {args.events:,} events by EventStore.append (batches of "
        f"{args.batch}, journal fsync + Tantivy in its writer child + DuckDB), while "
        f"{args.workers} processes bulk-load ClickHouse ({load()})",
        flush=True,
    )
    ch0, t0 = sum(tree_cpu_seconds(pid) for pid in ch_pids), time.perf_counter()
    procs, out = start_bulk(feed, 2 * per, args.batch, urls, args.workers)
    store = EventStore(
        args.dir / "embedded", heap_size=256_000_000, index_threads=1, index_process=True
    )
    try:
        embedded_ingest(store, feed, args.events, args.batch)
        t1 = time.perf_counter()
        segments = store.merge_segments()
        print(f"merge: {segments} segments in {time.perf_counter() - t1:.1f} s ({load()})")
    finally:
        store.close()
    finish_bulk(procs, out, t0, ch0, ch_pids)
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
