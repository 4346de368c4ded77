"""Benchmark the manager's /logs ingest: N simulated agents over mutual TLS.

Starts a real manager (`python -m appliance run`) on a fresh data directory with the real event
store (journal fsync'd before every 200), enrolls N agents through /enroll, then each agent
thread posts gzip NDJSON batches (real Sysmon events from ../shared/gene-oracle) with unique
batch ids over a keep-alive mTLS connection. Prints durable events/s, request latency p50/p95,
and the CPU seconds of the server and of the client. Usage:

    .venv/bin/python benchmarks/ingest.py [--agents 8] [--batch 1000] [--seconds 20]
                                          [--client-procs 2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
EVENTS = SHARED / "gene-oracle" / "corpus-events.jsonl.gz"
sys.path.insert(0, str(ROOT))

from benchmarks.localmanager import admin_session, enroll_agents, running_manager  # noqa: E402
from benchmarks.procstat import tree_cpu_seconds  # noqa: E402


def load_events(limit: int = 5000) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if EVENTS.exists():
        with gzip.open(EVENTS, "rt", encoding="utf-8") as fh:
            for line in fh:
                item = json.loads(line)
                ev = item.get("event", item)
                if isinstance(ev, dict) and isinstance(ev.get("Event"), dict):
                    out.append(ev)
                if len(out) >= limit:
                    break
    if not out:
        out = [
            {
                "Event": {
                    "System": {
                        "Channel": "Microsoft-Windows-Sysmon/Operational",
                        "EventID": 1,
                        "Computer": "BENCH",
                        "TimeCreated": {"SystemTime": "2026-01-01T00:00:00Z"},
                    },
                    "EventData": {"Image": f"C:\\bench\\{i}.exe"},
                }
            }
            for i in range(1000)
        ]
    return out


def make_batches(events: list[dict[str, Any]], size: int, count: int) -> list[bytes]:
    batches = []
    for b in range(count):
        lines = (
            json.dumps(events[(b * size + i) % len(events)]).encode() + b"\n" for i in range(size)
        )
        batches.append(gzip.compress(b"".join(lines), compresslevel=1))
    return batches


def agent_worker(args: tuple[str, str, str, str, list[bytes], float, int]) -> dict[str, Any]:
    url, cert, key, ca, batches, deadline, batch_size = args
    s = requests.Session()
    s.trust_env = False
    s.verify, s.cert = ca, (cert, key)
    latencies, accepted, errors, i = [], 0, 0, 0
    while time.time() < deadline:
        body = batches[i % len(batches)]
        i += 1
        t0 = time.perf_counter()
        res = s.post(
            url + "/logs",
            data=body,
            timeout=60,
            headers={
                "Content-Encoding": "gzip",
                "Content-Type": "application/x-ndjson",
                "X-Heron-Batch-Id": str(uuid.uuid4()),
            },
        )
        latencies.append(time.perf_counter() - t0)
        if res.status_code == 200:
            accepted += res.json()["accepted"]
        else:
            errors += 1
    return {"latencies": latencies, "accepted": accepted, "errors": errors}


def run_threads(jobs: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    from concurrent.futures import ThreadPoolExecutor

    cpu0 = sum(os.times()[:2])
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(agent_worker, jobs))
    results[0]["cpu"] = sum(os.times()[:2]) - cpu0
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--batch", type=int, default=1000, help="events per /logs request")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--client-procs", type=int, default=2)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="heron-bench-"))
    # stopping waits for the event store to index its backlog before it exits
    with running_manager(tmp, stop_timeout=300) as (server, init, urls):
        ca = init["ca_cert"]
        admin = admin_session(init)
        creds = enroll_agents(tmp, init, urls, args.agents, "bench")
        events = load_events()
        batches = make_batches(events, args.batch, 8)
        cpu0, t0 = tree_cpu_seconds(server.pid), time.time()
        deadline = t0 + args.seconds
        jobs = [(urls["endpoint"], c, k, ca, batches, deadline, args.batch) for c, k in creds]
        procs = max(1, min(args.client_procs, len(jobs)))
        groups = [jobs[i::procs] for i in range(procs)]
        with mp.get_context("fork").Pool(procs) as pool:
            results = [r for group in pool.map(run_threads, groups) for r in group]
        elapsed = time.time() - t0
        client_cpu = sum(r.get("cpu", 0.0) for r in results)
        server_cpu = tree_cpu_seconds(server.pid) - cpu0
        lat = sorted(x for r in results for x in r["latencies"])
        accepted = sum(r["accepted"] for r in results)
        errors = sum(r["errors"] for r in results)
        metrics = admin.get(urls["admin"] + "/metrics").text
        received = [
            ln for ln in metrics.splitlines() if ln.startswith("heron_events_received_total ")
        ]
        print(
            f"agents={args.agents} batch={args.batch} events/request, {len(lat)} requests, "
            f"{errors} errors, {elapsed:.1f} s"
        )
        print(
            f"durable events/s: {accepted / elapsed:,.0f}  ({accepted:,} events acknowledged; "
            f"server counter: {received[0].split()[1] if received else '?'})"
        )
        print(
            f"latency p50 {statistics.median(lat) * 1000:.1f} ms, "
            f"p95 {lat[int(len(lat) * 0.95) - 1] * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms"
        )
        print(
            f"CPU: server {server_cpu:.1f} s ({server_cpu / elapsed * 100:.0f}% of one core), "
            f"clients {client_cpu:.1f} s, on {os.cpu_count()} shared cores "
            f"(load average {os.getloadavg()[0]:.1f})"
        )
        print(
            f"server efficiency: {accepted / max(server_cpu, 1e-9):,.0f} durable events per "
            "server CPU-second"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
