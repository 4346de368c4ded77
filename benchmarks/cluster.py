"""Benchmark cluster mode: ingest through one and two front-ends into two ClickHouse shards,
and search latency on ClickHouse vs the embedded store (the queries of ``search.py``).

Starts two ClickHouse servers on loopback (Debian's ``clickhouse-server``, as the cluster test
tier does), generates ``--events`` events with ``search.py``'s generator (not timed), then:

* ingest, 1 front-end: an ``EventStore`` (journal fsync + local index in its writer child, as a
  cluster front-end runs) appends every batch while its ``Shipper`` ships to both shards; timed
  until ClickHouse confirmed the last event. CPU per event is the front-end's process tree
  (``ClickHouse`` separately: its servers' CPU over the same interval);
* ingest, 2 front-ends: two such processes with half the batches each, in parallel;
* search: p50/p95 of ``search.py``'s queries through ``ClusterEvents`` (count, and search of 100
  events) against the same queries on the 1-front-end's embedded store (same events).

Run: ``nice .venv/bin/python benchmarks/cluster.py --events 5000000 --dir /tmp/heron-cluster``
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
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
from index import EndpointRef, EventStore
from index.chship import Shipper
from index.chstore import ClusterEvents
from index.clickhouse import ClickHouse, create_schema
from tests.cluster.servers import start_clickhouse

START = datetime(2026, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=30)


def frontend(
    name: str, root: str, feed: str, part: int, parts: int, urls: list[str], out: Any
) -> None:
    """One front-end: append its share of the batches, ship, wait for ClickHouse."""
    logging.basicConfig(level=logging.WARNING)
    store = EventStore(Path(root), heap_size=256_000_000, index_process=True)
    shipper = Shipper(
        store.journal,
        [ClickHouse(u) for u in urls],
        frontend=name,
        state_path=Path(root) / "ship.json",
    )
    shipper.start()
    t0, c0 = time.perf_counter(), tree_cpu_seconds()
    done = 0
    for i, (host, events) in enumerate(read_batches(Path(feed))):
        if i % parts != part:
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
    label: str, base: Path, feed: Path, parts: int, urls: list[str], ch_pids: list[int]
) -> Path:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    roots = [base / f"{label}-fe{p}" for p in range(parts)]
    ch0 = sum(tree_cpu_seconds(pid) for pid in ch_pids)
    t0 = time.perf_counter()
    procs = [
        ctx.Process(
            target=frontend, args=(f"{label}-fe{p}", str(roots[p]), str(feed), p, parts, urls, out)
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
        f"ingest {parts} front-end(s): {total:,} events in {wall:.1f} s = "
        f"{total / wall:,.0f} events/s wall, durable and confirmed by ClickHouse; CPU "
        f"{fe_cpu / total * 1e6:.0f} us/event in the front-end(s) (journal + local index + "
        f"shipping), {ch_cpu / total * 1e6:.0f} us/event in ClickHouse",
        flush=True,
    )
    return roots[0]


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


def compare_search(embedded: EventStore, cluster: ClusterEvents, gen: Generator, runs: int) -> None:
    print(
        f"{'query (p50/p95 ms)':22s} {'embedded count':>16s} {'ClickHouse count':>18s} "
        f"{'embedded search':>16s} {'ClickHouse search':>18s}  hits"
    )
    for name, draw in queries(gen, random.Random(7)):
        params = [draw() for _ in range(runs)]
        results = []
        for store in (embedded, cluster):
            results.append([_ms(lambda q=q, kw=kw, s=store: s.count(q, **kw)) for q, kw in params])
        for store in (embedded, cluster):
            results.append(
                [_ms(lambda q=q, kw=kw, s=store: s.search(q, limit=100, **kw)) for q, kw in params]
            )
        hits = (
            embedded.count(params[-1][0], **params[-1][1]),
            cluster.count(params[-1][0], **params[-1][1]),
        )
        print(
            f"{name:22s} {_pp(results[0]):>16s} {_pp(results[1]):>18s} "
            f"{_pp(results[2]):>16s} {_pp(results[3]):>18s}  {hits[0]}/{hits[1]}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/heron-cluster"))
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    gen = Generator(42, 500, START, SPAN, args.events)
    feed = args.dir / "feed.zst"
    pregenerate(gen, args.events, args.batch, feed)
    nodes = start_clickhouse(args.dir / "ch", 2)
    try:
        urls = [n.url for n in nodes]
        shards = [ClickHouse(u) for u in urls]
        pids = [n.proc.pid for n in nodes if n.proc is not None]
        create_schema(shards, "heron")
        one = ingest("one", args.dir, feed, 1, urls, pids)
        for shard in shards:  # the 2-front-end run ingests the same events again: start empty
            shard.execute("TRUNCATE TABLE heron.events_local")
        ingest("two", args.dir, feed, 2, urls, pids)
        for shard in shards:
            shard.execute("OPTIMIZE TABLE heron.events_local FINAL")
        rows = sum(int(s.scalar("SELECT count() FROM heron.events_local")) for s in shards)
        size = sum(
            int(
                s.scalar(
                    "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND "
                    "table = 'events_local'"
                )
            )
            for s in shards
        )
        print(f"ClickHouse: {rows:,} rows, {size / rows:.0f} bytes/event on disk (both shards)")
        with EventStore(one, index_process=False) as embedded:
            compare_search(embedded, ClusterEvents(shards[0]), gen, args.runs)
    finally:
        for node in nodes:
            node.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
