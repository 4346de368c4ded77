"""Fleet scale (issue 24): N simulated endpoints, each with its own certificate, on one manager.

    python benchmarks/fleet.py --n 1000,10000 [--senders 1000] [--code /work/main] [--json]

For each N: a copy of an enrolled data directory (kept in --cache, enrolled once for the largest
N), a real `heron-manager run` subprocess from --code (default: this tree; pass another
checkout to compare), and the fleet in a second process (asyncio, one task per endpoint, its own
CPU reported apart). Each simulated agent follows the real agent's cadence:

* `longpoll` agents (this version): one connection held by `GET /commands?wait=60`, update
  checks `GET /updates` every `X-Heron-Poll-After` (±10 %) on a short connection that resumes
  the TLS session of the agent's connections (the first check resumes the long-poll's ticket);
* `poll` agents (the previous version, `--old-share`): one keep-alive connection, `GET /commands`
  every 5 s ±20 %, `GET /rules/sha256` every 60 s ±10 %, reconnecting when the manager closes.

`--senders K` of them also POST a gzip /logs batch of `--rate` events every second on their own
keep-alive connection (the combined mode, e.g. `--n 10000 --senders 1000 --rate 10`: also printed
are the /logs latency and the events/s offered by the senders vs stored by the manager, from its
`heron_events_received_total`). An admin queues `--commands` commands per second to random
agents over the admin API; the command latency runs from that POST to the agent reading the
command. Printed per N: manager CPU (% of one core over the measurement window) and RSS,
bytes per idle connection ((RSS with the fleet connected − RSS before) / connections), request
and command latency p50/p95/p99, errors, and the fleet's own CPU.

The ramp: every agent's TLS context is loaded first (`prepare_s`), then agents connect, each
from its own 127.x.y.z on Linux (`--one-source`: all from 127.0.0.1), paced by handshake latency
(`Pacer`), until all are connected or `--ramp-limit`. Printed apart: the ramp's time, full and
resumed handshakes, the manager's CPU per connected agent and the ramp's errors (the errors of
the measurement window are counted after `--settle`). The last lines are the issue's table.

This script runs a manager per (N, code) and reads the fleet process's phases; the parts are in
benchmarks/fleetlib/: manager.py (enrollment, the manager process, /metrics), conn.py (the TLS
connections), agent.py (one agent's polls, update checks and /logs batches), pacer.py (the ramp),
sim.py (the fleet process, `--role fleet`) and report.py (the printed lines and table).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.fleetlib.manager import Manager, configure, enroll, metrics  # noqa: E402
from benchmarks.fleetlib.report import print_run, print_table  # noqa: E402
from benchmarks.fleetlib.sim import fleet_main  # noqa: E402


def ramp_result(line: str, manager_cpu_s: float) -> dict[str, Any]:
    """The RAMPED line of the fleet plus the manager's CPU over the ramp (per connected agent)."""
    ramp: dict[str, Any] = json.loads(line.split(" ", 1)[1])
    connected = max(1, ramp.pop("connected"))
    ramp["ramp_manager_cpu_s"] = round(manager_cpu_s, 1)
    ramp["ramp_manager_ms_per_agent"] = round(manager_cpu_s * 1000 / connected, 2)
    return ramp


def one_run(args: argparse.Namespace, code: Path, n: int) -> dict[str, Any]:
    run_dir = Path(args.cache).parent / f"run-{code.name}-{n}"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(Path(args.cache) / "data", run_dir)
    configure(code, run_dir, max(2048, n * 2 + 100))
    mgr = Manager(code, run_dir)
    try:
        time.sleep(2)
        rss0, cpu_start = mgr.rss(), mgr.cpu()
        fleet = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--role",
                "fleet",
                "--cache",
                args.cache,
                "--agents",
                str(n),
                "--port",
                str(mgr.endpoint),
                "--admin",
                str(mgr.admin),
                "--senders",
                str(min(args.senders, n)),
                "--rate",
                str(args.rate),
                "--old-share",
                str(args.old_share),
                "--commands",
                str(args.commands),
                "--seconds",
                str(args.seconds),
                "--settle",
                str(args.settle),
                "--ramp-limit",
                str(args.ramp_limit),
                "--deliver-limit",
                str(args.deliver_limit),
                *(["--one-source"] if args.one_source else []),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            start_new_session=True,
        )
        assert fleet.stdout is not None
        result: dict[str, Any] = {}
        ramped: dict[str, Any] = {}
        cpu0 = t0 = 0.0
        rss_ready = 0
        measured: dict[str, Any] = {}
        ready: dict[str, Any] = {}
        m0: dict[str, float] = {}
        senders = min(args.senders, n)
        for line in fleet.stdout:
            if line.startswith("RAMP\n"):
                cpu_start = mgr.cpu()
            elif line.startswith("RAMPED"):
                ramped = ramp_result(line, mgr.cpu() - cpu_start)
            elif line.startswith("READY"):
                cpu0, t0, rss_ready = mgr.cpu(), time.monotonic(), mgr.rss()
                ready = json.loads(line.split(" ", 1)[1])
                m0 = metrics(mgr.admin, Path(args.cache)) if senders else {}
                print(f"  measuring (manager pid {mgr.proc.pid})", file=sys.stderr, flush=True)
            elif line.startswith("MEASURED"):
                window = time.monotonic() - t0
                if senders:  # the combined mode: events offered by the senders vs stored
                    m1 = metrics(mgr.admin, Path(args.cache))
                    stored = m1.get("heron_events_received_total", 0.0) - m0.get(
                        "heron_events_received_total", 0.0
                    )
                    measured["offered_events_s"] = round(senders * args.rate)
                    measured["stored_events_s"] = round(stored / window)
                measured |= {
                    "manager_cpu": round((mgr.cpu() - cpu0) / window * 100),
                    "manager_rss_mb": round(mgr.rss() / 2**20),
                    "bytes_per_conn": round(
                        (rss_ready - rss0) / max(1, ready["connected"] + min(args.senders, n))
                    ),
                }
            elif line.startswith("DONE"):
                result = json.loads(line.split(" ", 1)[1]) | measured | ramped
        fleet.wait(60)
        return result
    finally:
        mgr.stop()
        shutil.copy(run_dir / "manager.log", run_dir.parent / f"manager-{code.name}-{n}.log")
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--role", default="main", choices=["main", "fleet"])
    p.add_argument("--n", default="1000", help="comma-separated fleet sizes")
    p.add_argument("--agents", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--admin", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument(
        "--code",
        action="append",
        default=[],
        help="checkout whose manager runs (repeat to compare; default: this tree)",
    )
    p.add_argument("--senders", type=int, default=0, help="agents sending events")
    p.add_argument("--rate", type=int, default=10, help="events/s per sender")
    p.add_argument(
        "--old-share",
        type=float,
        default=-1.0,
        help="share of previous-version (polling) agents (default: 1 against a "
        "manager without long-poll, else 0)",
    )
    p.add_argument("--commands", type=float, default=2.0, help="commands queued per second")
    p.add_argument("--seconds", type=float, default=60.0, help="measurement window")
    p.add_argument(
        "--settle",
        type=float,
        default=70.0,
        help="wait after the ramp (default: the agents' first update checks, spread over "
        "their first 60 s, are done before the idle fleet is measured)",
    )
    p.add_argument(
        "--ramp-limit", type=float, default=900.0, help="seconds to connect N, then measure"
    )
    p.add_argument(
        "--deliver-limit",
        type=float,
        default=60.0,
        help="seconds the commands queued last may take to arrive after the window",
    )
    p.add_argument(
        "--one-source",
        action="store_true",
        help="every agent connects from 127.0.0.1 (default: each from its own 127.x.y.z)",
    )
    p.add_argument("--cache", default="/tmp/heron-fleet-bench/cache")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.role == "fleet":
        fleet_main(args)
        return
    sizes = [int(x) for x in args.n.split(",")]
    enroll(Path(args.cache), max(sizes))
    codes = [Path(c).resolve() for c in args.code] or [ROOT]
    rows: list[dict[str, Any]] = []
    for n in sizes:
        for code in codes:
            share = args.old_share
            if share < 0:
                share = 0.0 if any(code.glob("appliance/**/longpoll.py")) else 1.0
            res = one_run(argparse.Namespace(**{**vars(args), "old_share": share}), code, n)
            res.update(n=n, code=str(code), old_share=share, senders=min(args.senders, n))
            res["load"] = os.getloadavg()[0]
            rows.append(res)
            if args.json:
                print(json.dumps(res), flush=True)
            else:
                print_run(res)
    if not args.json:
        print_table(rows)


if __name__ == "__main__":
    main()
