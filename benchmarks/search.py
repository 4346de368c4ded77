"""Benchmark the event store: ingest rate, bytes per event, query latency.

Builds a store of ``--events`` events (default 5,000,000) generated from the real corpus
shapes (``../shared/gene-oracle/corpus-events.jsonl.gz``) with varied hosts, times, process
GUIDs, hashes, command lines and file names, then prints the ingest rate, the bytes per
event on disk and p50/p95 latencies of term, phrase, range-with-sort and SQL aggregation
queries (each query is a full ``EventStore.search`` call, limit 100, events loaded).

The events are generated first into a compressed file (not timed); ingest then decodes each
batch as the manager would and appends it. Besides the wall-clock rate (which depends on
what else runs on the machine) it prints the CPU cost per event over all threads.

Run: ``nice .venv/bin/python benchmarks/search.py --events 5000000 --dir /tmp/heron-bench``
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import random
import shutil
import statistics
import struct
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.services.ingest import tune_gc
from benchmarks.procstat import tree_cpu_seconds
from index import EndpointRef, EventStore

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared/gene-oracle/corpus-events.jsonl.gz"
WORDS = (
    "net",
    "user",
    "administrator",
    "/domain",
    "-enc",
    "JABzAD0ATgBlAHcA",
    "/c",
    "whoami",
    "reg",
    "add",
    "HKLM\\Software\\Run",
    "/v",
    "updater",
    "certutil",
    "-urlcache",
    "-split",
    "-f",
    "http://203.0.113.7/a.exe",
    "schtasks",
    "/create",
    "/tn",
    "backup",
    "rundll32",
    "comsvcs.dll,MiniDump",
    "vssadmin",
    "delete",
    "shadows",
    "/all",
    "/quiet",
    "ping",
    "-n",
)
EXES = (
    "cmd.exe",
    "powershell.exe",
    "rundll32.exe",
    "svchost.exe",
    "explorer.exe",
    "chrome.exe",
    "winword.exe",
    "excel.exe",
    "certutil.exe",
    "wmic.exe",
    "mshta.exe",
    "regsvr32.exe",
    "notepad.exe",
    "conhost.exe",
    "msiexec.exe",
    "taskhostw.exe",
    "lsass.exe",
    "net.exe",
)
DIRS = (
    "C:\\Windows\\System32",
    "C:\\Windows\\SysWOW64",
    "C:\\Program Files\\Microsoft Office",
    "C:\\Users\\{u}\\AppData\\Local\\Temp",
    "C:\\Users\\{u}\\Downloads",
    "C:\\ProgramData",
)


class Generator:
    """Deterministic varied events shaped like the corpus."""

    def __init__(self, seed: int, hosts: int, start: datetime, span: timedelta, total: int):
        self.rng = random.Random(seed)
        with gzip.open(CORPUS) as fh:
            self.templates = [orjson.loads(line)["event"] for line in fh]
        self.hosts = [f"WS-{i:04d}" for i in range(hosts)]
        self.users = [f"user{i:03d}" for i in range(300)]
        self.binaries = [self._binary(i) for i in range(20_000)]
        self.start, self.step = start, span / max(total, 1)

    def _binary(self, i: int) -> tuple[str, str]:
        rng = self.rng
        path = (
            rng.choice(DIRS).format(u=rng.choice(self.users))
            + "\\"
            + (rng.choice(EXES) if i % 4 else f"tool{i}.exe")
        )
        hashes = (
            f"SHA1={rng.getrandbits(160):040X},MD5={rng.getrandbits(128):032X},"
            f"SHA256={rng.getrandbits(256):064X},IMPHASH={rng.getrandbits(128):032X}"
        )
        return path, hashes

    def event(self, n: int) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        tpl = self.templates[n % len(self.templates)]
        inner = tpl["Event"]
        system = dict(inner.get("System") or {})
        host = self.hosts[rng.randrange(len(self.hosts))]
        when = self.start + self.step * n
        system["Computer"] = host
        system["TimeCreated"] = {"SystemTime": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        data = dict(inner.get("EventData") or {})
        image, hashes = self.binaries[rng.randrange(len(self.binaries))]
        for key in data:
            if key == "Image":
                data[key] = image
            elif key == "Hashes":
                data[key] = hashes
            elif key in ("ProcessGuid", "ParentProcessGuid", "LogonGuid"):
                data[key] = f"{{{rng.getrandbits(128):032x}}}"
            elif key in ("ProcessId", "ParentProcessId"):
                data[key] = str(rng.randrange(4, 65536, 4))
            elif key == "CommandLine":
                args = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 6)))
                data[key] = f'"{image}" {args} {rng.randrange(1_000_000)}'
            elif key == "TargetFilename":
                data[key] = f"C:\\Users\\{rng.choice(self.users)}\\Documents\\f{n}.tmp"
            elif key in ("DestinationIp", "SourceIp", "IpAddress"):
                data[key] = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
            elif key == "User" or key == "TargetUserName":
                data[key] = f"CORP\\{rng.choice(self.users)}"
        out: dict[str, Any] = {"Event": {**inner, "System": system, "EventData": data}}
        if n % 500 == 0:
            out["Event"]["Detection"] = {"Signature": ["BenchRule"], "Criticality": 8}
        return host, out

    def batches(self, total: int, size: int) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        n = 0
        while n < total:
            host, first = self.event(n)
            batch = [first]
            batch += [self.event(n + i)[1] for i in range(1, min(size, total - n))]
            n += len(batch)
            yield host, batch


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def pregenerate(gen: Generator, total: int, size: int, path: Path) -> None:
    """Write the batches to ``path`` (length-prefixed zstd JSON) so generation is not timed."""
    cctx = zstandard.ZstdCompressor(level=1)
    with path.open("wb") as fh:
        for host, batch in gen.batches(total, size):
            frame = cctx.compress(orjson.dumps({"host": host, "events": batch}))
            fh.write(struct.pack("<I", len(frame)) + frame)


def read_batches(path: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Yield ``(host, events)`` from a pregenerated file (decoded as the manager would)."""
    dctx = zstandard.ZstdDecompressor()
    with path.open("rb") as fh:
        while head := fh.read(4):
            body = orjson.loads(dctx.decompress(fh.read(struct.unpack("<I", head)[0])))
            yield body["host"], body["events"]


def ingest(store: EventStore, path: Path, total: int, batch: int) -> None:
    """Append every pregenerated batch, flush, and print wall rate and CPU cost."""
    t0, c0 = time.perf_counter(), tree_cpu_seconds()
    done = 0
    for i, (host, events) in enumerate(read_batches(path)):
        store.append(events, endpoint=EndpointRef(f"uuid-{host}", host), batch_id=str(i))
        done += len(events)
        if done % 500_000 < batch:
            rate = done / (time.perf_counter() - t0)
            print(f"  {done:,} events appended ({rate:,.0f}/s)", flush=True)
    store.flush(timeout=None)
    elapsed, cpu = time.perf_counter() - t0, tree_cpu_seconds() - c0
    print(
        f"ingest: {total:,} events in {elapsed:.1f} s = {total / elapsed:,.0f} events/s wall "
        f"(decode + append/fsync + index + tables + commits); "
        f"CPU {cpu / total * 1e6:.0f} us/event over all threads and processes "
        f"(= {2 * total / cpu:,.0f} events/s if 2 cores were ours alone); "
        f"load average now {os.getloadavg()[0]:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/heron-bench"))
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--keep", action="store_true", help="reuse an existing store")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="write Tantivy in this process (the manager uses a child process)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    tune_gc()  # NOTE: the manager's ingest process runs with these GC thresholds

    start = datetime(2026, 1, 1, tzinfo=UTC)
    span = timedelta(days=30)
    gen = Generator(42, 500, start, span, args.events)
    store_dir = args.dir / "store"
    feed = args.dir / f"feed-{args.events}-{args.batch}.zst"
    if not args.keep:
        shutil.rmtree(store_dir, ignore_errors=True)
        args.dir.mkdir(parents=True, exist_ok=True)
        if not feed.exists():  # NOTE: the feed is deterministic (seed 42) and reused
            t0 = time.perf_counter()
            pregenerate(gen, args.events, args.batch, feed.with_suffix(".part"))
            feed.with_suffix(".part").rename(feed)
            print(
                f"generated {args.events:,} events in {time.perf_counter() - t0:.1f} s "
                f"({feed.stat().st_size / 2**20:.0f} MiB compressed, not timed below)",
                flush=True,
            )
    store = EventStore(
        store_dir, heap_size=256_000_000, index_threads=1, index_process=not args.in_process
    )
    try:
        if not args.keep:
            ingest(store, feed, args.events, args.batch)
            t0 = time.perf_counter()
            segments = store.merge_segments()
            print(f"merge: {segments} segments in {time.perf_counter() - t0:.1f} s")
        stats = store.stats()
        usage = stats["bytes"]
        count = stats["events"]
        print(
            f"events: {count:,}; bytes/event: total {usage['total'] / count:.0f} "
            f"(journal {usage['journal'] / count:.0f}, index {usage['index'] / count:.0f}, "
            f"tables {usage['tables'] / count:.0f})"
        )
        run_queries(store, gen, start, span, args.runs)
    finally:
        store.close()
    return 0


def run_queries(
    store: EventStore, gen: Generator, start: datetime, span: timedelta, runs: int
) -> None:
    """Print latencies: query only (count), full search (100 events loaded), cold then warm.

    "cold" is the first run of each drawn parameter set (its postings and stored documents
    may have to come from disk); "warm" repeats the same parameter sets.
    """
    rng = random.Random(7)
    sha = [b[1].split("SHA256=")[1].split(",")[0] for b in gen.binaries]

    def hour() -> dict[str, Any]:
        at = start + span * rng.random()
        return {"since": at, "until": at + timedelta(hours=1)}

    searches: list[tuple[str, Callable[[], tuple[str, dict[str, Any]]]]] = [
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
                f"ts:[{(start + span * rng.random()).isoformat()} TO {(start + span).isoformat()}]"
                " AND EventID:4688",
                {},
            ),
        ),
    ]
    print(
        f"{'query (p50/p95 ms)':22s} {'count only':>16s} {'search cold':>18s} "
        f"{'search warm':>18s}  hits"
    )
    for name, draw in searches:
        params = [draw() for _ in range(runs)]
        count = [_ms(lambda q=q, kw=kw: store.count(q, **kw)) for q, kw in params]
        cold = [_ms(lambda q=q, kw=kw: store.search(q, limit=100, **kw)) for q, kw in params]
        warm = [_ms(lambda q=q, kw=kw: store.search(q, limit=100, **kw)) for q, kw in params]
        hits = store.count(params[-1][0], **params[-1][1])
        print(f"{name:22s} {_pp(count):>16s} {_pp(cold):>18s} {_pp(warm):>18s}  {hits}")
    sqls: list[tuple[str, Callable[[], str]]] = [
        (
            "sql per-hour count 1d",
            lambda: (
                "SELECT date_trunc('hour', ts) h, event_id, count(*) FROM events "
                f"WHERE ts >= TIMESTAMP '{(start + span * rng.random()).replace(tzinfo=None)}' - "
                "INTERVAL 1 DAY GROUP BY 1, 2 ORDER BY 1"
            ),
        ),
        (
            "sql top images/host",
            lambda: (
                f"SELECT image, count(*) c FROM events WHERE computer = '{rng.choice(gen.hosts)}' "
                "GROUP BY 1 ORDER BY c DESC LIMIT 10"
            ),
        ),
        (
            "sql count by channel",
            lambda: "SELECT channel, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC",
        ),
    ]
    for name, draw in sqls:
        texts = [draw() for _ in range(runs)]
        cold = [_ms(lambda t=t: store.sql(t)) for t in texts]
        warm = [_ms(lambda t=t: store.sql(t)) for t in texts]
        print(f"{name:22s} {'':>16s} {_pp(cold):>18s} {_pp(warm):>18s}")


def _ms(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def _pp(samples: list[float]) -> str:
    p50, p95 = percentiles(samples)
    return f"{p50:.1f} / {p95:.1f}"


if __name__ == "__main__":
    raise SystemExit(main())
