"""Benchmark WebSocket stream fan-out: C clients on /stream/events while events arrive at R/s.

Starts a real manager (`python -m appliance run`, durable event store: `--memory-events` would
keep every event in the manager's RSS), enrolls one agent whose threads post gzip NDJSON batches
over mutual TLS on a fixed schedule (real Sysmon events from ../shared/gene-oracle, each stamped
with its send time), and runs C `websockets` clients spread over client processes. When the
producer stops, every client reads until it has accounted for each published event: received,
or reported lost by a drop notice (a slow client loses its oldest events, never memory).
Prints delivered/s, lag p50/p95 (post → receipt), drops, and the manager's CPU, RSS growth and
thread count (baseline and with every client connected). Usage:

    .venv/bin/python benchmarks/streams.py [--clients 200] [--rate 1000] [--seconds 10]
                                           [--batch 100] [--client-procs 2] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import multiprocessing as mp
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import load_events  # noqa: E402
from benchmarks.localmanager import enroll_agents, start_manager  # noqa: E402
from benchmarks.procstat import tree_cpu_seconds  # noqa: E402

DRAIN = 120.0  # default seconds clients get to account for every event after the producer stops


def client_proc(
    url: str,
    key: str,
    ca: str,
    n: int,
    ready: Any,
    published: Any,
    done: Any,
    results: Any,
    drain: float,
) -> None:
    """Run `n` stream clients; report per-client counts and sampled lags."""
    from websockets.asyncio.client import connect

    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False

    async def one(stats: dict[str, Any], opened: asyncio.Event, counter: list[int]) -> None:
        async with connect(
            url,
            ssl=ctx,
            additional_headers={"Api-Key": key},
            max_size=None,
            open_timeout=60,
            ping_interval=None,  # as pywhids: no client keepalive timeout while overloaded
        ) as ws:
            counter[0] += 1
            if counter[0] == n:
                opened.set()
            deadline = None
            while True:
                want = published.value
                if want >= 0 and stats["received"] + stats["dropped"] >= want:
                    return
                if want >= 0:
                    deadline = deadline or time.monotonic() + drain
                    if time.monotonic() > deadline:
                        return
                try:
                    msg = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                if msg.startswith('{"Heron"'):  # a drop notice
                    stats["dropped"] += orjson.loads(msg)["Heron"]["Dropped"]
                    continue
                stats["received"] += 1
                if stats["received"] % 10 == 1:  # PERF: the clients are the bottleneck here
                    data = orjson.loads(msg)
                    sent = float(data["Event"]["EventData"]["BenchSent"])
                    stats["lags"].append(time.time() - sent)

    async def main() -> list[dict[str, Any]]:
        opened = asyncio.Event()
        counter = [0]
        stats = [{"received": 0, "dropped": 0, "lags": []} for _ in range(n)]
        tasks = [asyncio.create_task(one(s, opened, counter)) for s in stats]
        await opened.wait()
        ready.release()
        try:
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), drain + 600)
        except TimeoutError:
            pass
        return stats

    results.put(asyncio.run(main()))
    done.release()


def sample_rss(pid: int, stop: threading.Event, out: dict[str, float]) -> None:
    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            rss = proc.memory_info().rss
            out["peak_rss"] = max(out.get("peak_rss", 0.0), float(rss))
            out["peak_threads"] = max(out.get("peak_threads", 0.0), float(proc.num_threads()))
        except psutil.Error:
            return
        stop.wait(0.2)


def enroll(tmp: Path, urls: dict[str, Any], init: dict[str, Any]) -> requests.Session:
    """One enrolled agent's mTLS session."""
    agent = requests.Session()
    agent.trust_env, agent.verify = False, init["ca_cert"]
    agent.cert = enroll_agents(tmp, init, urls, 1, "bench-streams")[0]
    return agent


STAMP = b"9999999999.999999"  # placeholder of the send time, replaced per batch


def produce(
    agent: requests.Session, url: str, rate: int, batch: int, seconds: float, workers: int = 4
) -> tuple[int, float]:
    """Post `rate` events/s in batches for `seconds` (batch k due at k·batch/rate s; several
    posting threads, so one slow /logs answer does not lower the rate); returns (posted, s)."""
    lines = []
    for ev in load_events(2000):
        ev["Event"].setdefault("EventData", {})["BenchSent"] = STAMP.decode()
        lines.append(json.dumps(ev).encode())
    lines = lines * 2
    count = int(seconds * rate / batch)
    next_k = iter(range(count))
    lock = threading.Lock()
    t0 = time.monotonic()

    def worker() -> None:
        session = requests.Session()
        session.trust_env, session.verify, session.cert = False, agent.verify, agent.cert
        while True:
            with lock:
                k = next(next_k, None)
            if k is None:
                return
            due = t0 + k * batch / rate
            if due > time.monotonic():
                time.sleep(due - time.monotonic())
            start = (k * batch) % (len(lines) // 2)
            body = b"\n".join(lines[start : start + batch]) + b"\n"
            body = body.replace(STAMP, b"%.6f" % time.time())
            res = session.post(
                url + "/logs",
                data=gzip.compress(body, compresslevel=1),
                timeout=60,
                headers={"Content-Encoding": "gzip", "X-Heron-Batch-Id": str(uuid.uuid4())},
            )
            res.raise_for_status()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count * batch, time.monotonic() - t0


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="heron-bench-streams-"))
    clients = args.clients
    server, init, urls = start_manager(
        tmp,
        lambda cfg: cfg.replace(
            "ws_max_clients = 1024", f"ws_max_clients = {max(1024, clients)}"
        ).replace("ws_per_key = 64", f"ws_per_key = {max(64, clients)}"),
    )
    try:
        agent = enroll(tmp, urls, init)
        mproc = psutil.Process(server.pid)
        time.sleep(0.5)  # let start-up allocations settle before the baseline
        base_rss, base_threads = mproc.memory_info().rss, mproc.num_threads()
        ws_url = urls["admin"].replace("https", "wss", 1) + "/stream/events"
        procs_n = max(1, min(args.client_procs, args.clients))
        ctx = mp.get_context("spawn")
        ready, done = ctx.Semaphore(0), ctx.Semaphore(0)
        published = ctx.Value("q", -1)
        results = ctx.Queue()
        shares = [args.clients // procs_n + (1 if i < args.clients % procs_n else 0)
                  for i in range(procs_n)]  # fmt: skip
        procs = [
            ctx.Process(
                target=client_proc,
                args=(
                    ws_url,
                    init["api_key"],
                    init["ca_cert"],
                    n,
                    ready,
                    published,
                    done,
                    results,
                    args.drain,
                ),
                daemon=True,
            )
            for n in shares
        ]
        for p in procs:
            p.start()
        for _ in procs:
            if not ready.acquire(timeout=120):
                raise RuntimeError("stream clients did not all connect")
        connected_threads = mproc.num_threads()
        stop, peaks = threading.Event(), {}
        sampler = threading.Thread(target=sample_rss, args=(server.pid, stop, peaks), daemon=True)
        sampler.start()
        cpu0 = tree_cpu_seconds(server.pid)
        posted, elapsed = produce(agent, urls["endpoint"], args.rate, args.batch, args.seconds)
        published.value = posted
        t_drain = time.monotonic()
        per_client: list[dict[str, Any]] = []
        for _ in procs:
            per_client.extend(results.get(timeout=args.drain + 120))
        drain = time.monotonic() - t_drain
        cpu = tree_cpu_seconds(server.pid) - cpu0
        stop.set()
        sampler.join()
        for p in procs:
            p.join(timeout=10)
        metrics = requests.get(
            urls["admin"] + "/metrics",
            verify=init["ca_cert"],
            headers={"X-Api-Key": init["api_key"]},
            timeout=30,
        ).text
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
    lags = sorted(x for c in per_client for x in c["lags"])
    received = sum(c["received"] for c in per_client)
    dropped = sum(c["dropped"] for c in per_client)
    wall = elapsed + drain
    return {
        "clients": args.clients,
        "rate": args.rate,
        "seconds": round(elapsed, 2),
        "published": posted,
        "received": received,
        "dropped": dropped,
        "accounted_clients": sum(1 for c in per_client if c["received"] + c["dropped"] == posted),
        "clients_reporting": len(per_client),
        "min_received": min((c["received"] for c in per_client), default=0),
        "delivered_per_s": round(received / wall, 1) if wall else 0.0,
        "drain_s": round(drain, 2),
        "lag_p50_ms": round(1000 * statistics.median(lags), 1) if lags else None,
        "lag_p95_ms": round(1000 * lags[int(0.95 * (len(lags) - 1))], 1) if lags else None,
        "manager_cpu_s": round(cpu, 2),
        "manager_cpu_pct": round(100 * cpu / wall, 1) if wall else 0.0,
        "rss_base_mb": round(base_rss / 2**20, 1),
        "rss_peak_mb": round(peaks.get("peak_rss", base_rss) / 2**20, 1),
        "rss_growth_mb": round((peaks.get("peak_rss", base_rss) - base_rss) / 2**20, 1),
        "threads_base": base_threads,
        "threads_connected": connected_threads,
        "threads_peak": int(peaks.get("peak_threads", connected_threads)),
        "ws_streams_metric": _metric(metrics, "heron_ws_streams"),
        "stream_dropped_metric": _metric(metrics, "heron_stream_dropped_total"),
    }


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--rate", type=int, default=1000, help="events/s posted by the agent")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=100, help="events per /logs request")
    ap.add_argument("--client-procs", type=int, default=2)
    ap.add_argument("--drain", type=float, default=DRAIN, help="max s to account for events")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of text")
    args = ap.parse_args()
    r = run(args)
    if args.json:
        print(json.dumps(r))
        return 0
    print(
        f"{r['clients']} clients x {r['rate']} events/s for {r['seconds']} s: "
        f"{r['published']:,} published, {r['received']:,} delivered, {r['dropped']:,} dropped "
        f"(clients accounting for every event: {r['accounted_clients']}/{r['clients']})"
    )
    print(
        f"delivered/s: {r['delivered_per_s']:,.0f} (drain after the producer stopped "
        f"{r['drain_s']} s); lag p50 {r['lag_p50_ms']} ms, p95 {r['lag_p95_ms']} ms"
    )
    print(
        f"manager: CPU {r['manager_cpu_s']} s ({r['manager_cpu_pct']} % of one core), "
        f"RSS {r['rss_base_mb']} -> peak {r['rss_peak_mb']} MiB (+{r['rss_growth_mb']}), "
        f"threads {r['threads_base']} -> {r['threads_connected']} connected "
        f"(peak {r['threads_peak']})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
