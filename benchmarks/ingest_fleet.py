"""/logs at fleet scale (issue 24): many agents, each sending small batches at a steady rate.

    python benchmarks/ingest_fleet.py [--agents 1000] [--rate 10] [--batch 10] [--seconds 60]
                                      [--code DIR ...] [--repeat 2]

Each simulated agent has its own certificate (enrolled once into --cache by benchmarks/fleetlib's
`enroll`) and one keep-alive mutual-TLS connection, and POSTs a gzip NDJSON batch of --batch events
every batch/rate seconds, waiting for each answer as the real forwarder does (a slow manager
lowers what is really offered; the schedule does not catch up). The fleet runs in its own process
(asyncio), its CPU reported apart. With several --code checkouts the runs alternate (A B A B, the
same box state for both). Printed per run: the box load, events/s offered and stored (the
manager's `heron_events_received_total`), /logs batches/s, journal fsyncs/s
(`heron_journal_syncs`; a manager without it syncs once per batch), /logs latency p50/p95/p99,
errors, the manager's CPU (% of one core) and its stored events per CPU-second.

`--store N` measures the event store alone (no TLS, no HTTP): N threads append --batch-event
batches to a real `EventStore` (journal fsync'd, index writer child) for --seconds, in a
subprocess per --code checkout: batches/s, events/s, journal fsyncs/s, append latency.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import resource
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.fleetlib.conn import Conn, Stats, client_context, pct  # noqa: E402
from benchmarks.fleetlib.manager import (  # noqa: E402
    Manager,
    configure,
    enroll,
    metrics,
    raise_nofile,
)


def _event(i: int) -> bytes:
    """A Sysmon process creation of about 1 KB (the size the hunting-volume figures saw)."""
    return json.dumps(
        {
            "Event": {
                "System": {
                    "Channel": "Microsoft-Windows-Sysmon/Operational",
                    "EventID": 1,
                    "Computer": f"sim-{i}",
                    "TimeCreated": {"SystemTime": "2026-12-05T00:00:00Z"},
                },
                "EventData": {
                    "Image": "C:\\Windows\\System32\\cmd.exe",
                    "CommandLine": f"cmd.exe /c whoami {i} " + "x" * 800,
                    "ParentImage": "C:\\Windows\\explorer.exe",
                },
            }
        }
    ).encode()


# ----------------------------------------------------------------------------- the fleet process
class Fleet:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cache = Path(args.cache)
        self.uuids: list[str] = json.loads((self.cache / "fleet.json").read_text())["uuids"]
        self.stats = Stats()
        self.latencies: list[float] = []
        self.batches = self.events = 0
        self.measuring = False

    async def agent(self, i: int, ready: asyncio.Semaphore) -> None:
        a = self.args
        ctx = client_context(
            self.cache / "data" / "pki" / "ca.pem",
            self.cache / "fleet" / f"{i}.pem",
            self.cache / "fleet" / f"{i}.key",
            False,
        )
        conn = Conn(ctx, a.port, self.stats)
        async with ready:  # a bounded number of handshakes at once
            for attempt in range(20):
                try:
                    await conn.open()
                    break
                except (OSError, TimeoutError, ssl.SSLError) as ex:
                    self.stats.error("connect " + type(ex).__name__)
                    await asyncio.sleep(min(5.0, 0.5 * (attempt + 1)))
            else:
                return
        self.stats.connected += 1
        bodies: dict[int, bytes] = {}  # events → gzip body
        interval = a.batch / a.rate
        headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
        seq = 0
        after = 0.0  # the manager's X-Heron-Batch-After, honoured as the agent does
        await asyncio.sleep(random.random() * interval)
        while True:
            t0 = time.monotonic()
            seq += 1
            period = interval if a.ignore_advice else max(interval, min(after, 10.0))
            count = max(1, round(a.rate * period))  # the events the agent spooled meanwhile
            body = bodies.get(count)
            if body is None:
                body = bodies[count] = gzip.compress(b"\n".join(_event(i) for _ in range(count)), 3)
            try:
                status, hdrs, _ = await conn.request(
                    "POST",
                    "/logs",
                    body,
                    headers | {"X-Heron-Batch-Id": f"{self.uuids[i]}-{seq}"},
                    timeout=120,
                )
                after = float(hdrs.get("x-heron-batch-after", 0.0))
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError) as ex:
                status = -1
                if self.measuring:
                    self.stats.error(type(ex).__name__)
            took = time.monotonic() - t0
            if self.measuring:
                if status == 200:
                    self.latencies.append(took)
                    self.batches += 1
                    self.events += count
                elif status != -1:
                    self.stats.error(f"HTTP {status}")
            await asyncio.sleep(max(0.0, period - took))

    async def run(self) -> dict[str, Any]:
        a = self.args
        ready = asyncio.Semaphore(16)
        t0 = time.monotonic()
        tasks = [asyncio.create_task(self.agent(i, ready)) for i in range(a.agents)]
        while self.stats.connected + sum(self.stats.errors.values()) < a.agents:
            if time.monotonic() - t0 > a.ramp_limit:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(a.settle)
        self.stats.errors.clear()
        self.measuring = True
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        print("READY", json.dumps({"connected": self.stats.connected}), flush=True)
        await asyncio.sleep(a.seconds)
        self.measuring = False
        print("MEASURED", flush=True)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        for t in tasks:
            t.cancel()
        return {
            "connected": self.stats.connected,
            "ramp_s": round(time.monotonic() - t0 - a.seconds - a.settle, 1),
            "acked_batches": self.batches,
            "acked_events": self.events,
            "logs_ms": pct(self.latencies),
            "errors": self.stats.errors,
            "fleet_cpu": round(
                (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / a.seconds * 100
            ),
        }


# ----------------------------------------------------------------------------- store alone
STORE_RUN = """
import json, os, shutil, sys, tempfile, threading, time
from index import EndpointRef, EventStore
threads, seconds, batch, event = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
root = tempfile.mkdtemp(prefix="heron-store-bench-")
store = EventStore(root)
events = [json.loads(event)] * batch
stop, lat = time.monotonic() + seconds, []
def run(n):
    ep, i = EndpointRef(f"ep-{n}", f"H{n}"), 0
    while time.monotonic() < stop:
        t = time.monotonic()
        store.append(events, endpoint=ep, batch_id=f"{n}-{i}")
        lat.append(time.monotonic() - t)
        i += 1
cpu0, t0 = sum(os.times()[:2]), time.monotonic()
workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
[w.start() for w in workers]
[w.join() for w in workers]
elapsed, cpu = time.monotonic() - t0, sum(os.times()[:2]) - cpu0
syncs = getattr(store.journal, "syncs", None)
store.close(drain=False)
shutil.rmtree(root, ignore_errors=True)
lat.sort()
ms = {"p50": lat[len(lat) // 2] * 1000, "p95": lat[int(len(lat) * 0.95)] * 1000}
print(json.dumps({
    "batches_s": round(len(lat) / elapsed),
    "events_s": round(len(lat) * batch / elapsed),
    "fsyncs_s": None if syncs is None else round(syncs / elapsed),
    "append_ms": {k: round(v, 1) for k, v in ms.items()},
    "cpu": round(cpu / elapsed * 100),
    "load": round(os.getloadavg()[0], 1),
}))
"""


def store_run(args: argparse.Namespace, code: Path) -> dict[str, Any]:
    """One store-alone run (see the module docstring) with `code`'s interpreter and tree."""
    from benchmarks.fleetlib.manager import python_of

    out = subprocess.run(
        [str(python_of(code)), "-c", STORE_RUN, str(args.store), str(args.seconds)]
        + [str(args.batch), _event(0).decode()],
        cwd=code,
        capture_output=True,
        text=True,
        check=True,
        timeout=args.seconds + 300,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# ----------------------------------------------------------------------------- orchestration
def one_run(args: argparse.Namespace, code: Path) -> dict[str, Any]:
    cache = Path(args.cache)
    run_dir = cache.parent / f"run-{code.name}"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(cache / "data", run_dir)
    configure(code, run_dir, max(2048, args.agents * 2 + 100))
    mgr = Manager(code, run_dir)
    try:
        fleet = subprocess.Popen(
            [sys.executable, __file__, "--role", "fleet", "--port", str(mgr.endpoint)]
            + [
                f"--{k.replace('_', '-')}" + ("" if v is True else f"={v}")
                for k, v in _passed(args).items()
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=raise_nofile,
        )
        assert fleet.stdout is not None
        result: dict[str, Any] = {}
        cpu0 = t0 = 0.0
        m0: dict[str, float] = {}
        load0 = 0.0
        for line in fleet.stdout:
            if line.startswith("READY"):
                m0, cpu0, t0 = metrics(mgr.admin, cache), mgr.cpu(), time.monotonic()
                load0 = os.getloadavg()[0]
            elif line.startswith("MEASURED"):
                window = time.monotonic() - t0
                cpu = mgr.cpu() - cpu0
                m1 = metrics(mgr.admin, cache)
                delta = {k: m1[k] - m0[k] for k in m1 if k in m0}
                events = delta.get("heron_events_received_total", 0.0)
                batches = delta.get("heron_batches_received_total", 0.0)
                syncs = delta.get("heron_journal_syncs")
                result = {
                    "load": round((load0 + os.getloadavg()[0]) / 2, 1),
                    "window_s": round(window, 1),
                    "offered_events_s": args.agents * args.rate,
                    "stored_events_s": round(events / window),
                    "batches_s": round(batches / window),
                    "fsyncs_s": None if syncs is None else round(syncs / window),
                    "batches_per_fsync": None if not syncs else round(batches / syncs, 1),
                    "manager_cpu": round(cpu / window * 100),
                    "events_per_cpu_s": round(events / max(cpu, 1e-9)),
                }
            elif line.startswith("DONE"):
                result |= json.loads(line.split(" ", 1)[1])
        fleet.wait(60)
        return result
    finally:
        mgr.stop()
        shutil.copy(run_dir / "manager.log", cache.parent / f"manager-{code.name}.log")
        shutil.rmtree(run_dir, ignore_errors=True)


def _passed(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("agents", "rate", "batch", "seconds", "settle", "ramp_limit", "cache")
    return {k: getattr(args, k) for k in keys} | (
        {"ignore_advice": True} if args.ignore_advice else {}
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--role", default="main", choices=["main", "fleet"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--agents", type=int, default=1000, help="simulated agents, all sending")
    p.add_argument("--rate", type=float, default=10.0, help="events/s per agent")
    p.add_argument("--batch", type=int, default=10, help="events per /logs batch")
    p.add_argument("--seconds", type=float, default=60.0, help="measurement window")
    p.add_argument("--settle", type=float, default=15.0, help="sending before the window")
    p.add_argument("--ramp-limit", type=float, default=300.0, help="seconds to connect them")
    p.add_argument(
        "--ignore-advice",
        action="store_true",
        help="agents keep their cadence (as before X-Heron-Batch-After, issue 24)",
    )
    p.add_argument(
        "--code",
        action="append",
        default=[],
        help="checkout whose manager runs (repeat to compare; default: this tree)",
    )
    p.add_argument("--repeat", type=int, default=1, help="alternating rounds over --code")
    p.add_argument("--store", type=int, default=0, help="N threads on the store alone (no HTTP)")
    p.add_argument("--cache", default="/tmp/heron-ingest-fleet/cache")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.role == "fleet":
        raise_nofile()
        print("DONE", json.dumps(asyncio.run(Fleet(args).run())), flush=True)
        return
    codes = [Path(c).resolve() for c in args.code] or [ROOT]
    if args.store:
        for rnd in range(args.repeat):
            for code in codes:
                res = store_run(args, code)
                print(
                    f"round {rnd + 1} code={code}: store alone, {args.store} threads × batches of "
                    f"{args.batch}: {json.dumps(res)}",
                    flush=True,
                )
        return
    enroll(Path(args.cache), args.agents)
    for rnd in range(args.repeat):
        for code in codes:
            res = one_run(args, code) | {"code": str(code), "round": rnd + 1}
            if args.json:
                print(json.dumps(res), flush=True)
                continue
            print(
                f"round {rnd + 1} code={code} load {res.get('load')}: {args.agents} agents × "
                f"{args.rate:g} events/s in batches of {args.batch} (connected "
                f"{res.get('connected')}): offered {res.get('offered_events_s'):,} events/s, "
                f"stored {res.get('stored_events_s'):,} events/s, {res.get('batches_s')} "
                f"batches/s, fsyncs/s {res.get('fsyncs_s')} ({res.get('batches_per_fsync')} "
                f"batches each), /logs ms {res.get('logs_ms')}, errors {res.get('errors')}, "
                f"manager CPU {res.get('manager_cpu')} % ({res.get('events_per_cpu_s'):,} events "
                f"per CPU-s), fleet CPU {res.get('fleet_cpu')} %",
                flush=True,
            )


if __name__ == "__main__":
    main()
