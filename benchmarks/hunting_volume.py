"""What the default forwarding costs: events/s and stored bytes/day per endpoint, and a
1,000-endpoint site, for a workstation-like and a server-like workload on this machine.

A real agent (live Linux sources: proc connector, /proc/net, fanotify; needs root) runs with
`log_all` on, so it sees everything; each event is classified as the *default* agent would
forward it: a detection (default rules, appliance/defaults/linux.gen) or a match of the default
forwarding filter (appliance/defaults/forwarding.gen). Only events of the workload's own
process tree are counted (the box is shared: other processes are reported apart, as
"background"). The forwarded events are then stored in a real `index.EventStore` (journal +
Tantivy + DuckDB) to measure the bytes one stored event takes.

Workloads (a subprocess; its descendants are the "endpoint"):
  workstation  an interactive user: a short shell pipeline every second (4 execs), a script
               and a text file written every 2 s, an interpreter start every 5 s, an outbound
               TCP connection every 3 s;
  server       a web server answering 20 new TCP connections/s from clients outside its
               process tree (each kept ~1 s, keep-alive), a cron-like job every 10 s and an
               appended access log.
The work directory is under /root (watched by fanotify by default, not under /tmp, whose
every new file the forwarding filter keeps).

Usage (root):
  .venv/bin/python benchmarks/hunting_volume.py --workload workstation --seconds 60
  .venv/bin/python benchmarks/hunting_volume.py --workload server --seconds 60
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import rules  # noqa: E402
from agent.config import parse_config  # noqa: E402
from agent.service import build_agent  # noqa: E402
from index import EndpointRef, EventStore  # noqa: E402

DEFAULTS = ROOT / "appliance" / "defaults"

WORKSTATION = r"""
import collections, os, socket, subprocess, time, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True)
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(64); port = srv.getsockname()[1]
held = collections.deque()
t0 = time.time(); n = 0
while True:
    n += 1
    subprocess.run(["sh", "-c", "ls -la / | grep -c usr >/dev/null; cat /etc/hostname >/dev/null"])
    if n % 2 == 0:
        open(f"{d}/notes-{n}.txt", "w").write("x" * 200)
        open(f"{d}/tool-{n}.sh", "w").write("#!/bin/sh\necho hi\n")
    if n % 5 == 0:
        subprocess.run([sys.executable, "-c", "pass"])
    if n % 3 == 0:  # an outbound connection that lives a few seconds (a page load)
        held.append(socket.create_connection(("127.0.0.1", port)))
        held.append(srv.accept()[0])  # the peer stays open too (else CLOSE_WAIT, not seen)
    while len(held) > 4:
        held.popleft().close()
    time.sleep(max(0.0, t0 + n - time.time()))
"""

# The server answers connections and keeps each open ~1 s (keep-alive); the clients are a
# separate process tree (remote clients on a real server), so only the server side counts.
SERVER = r"""
import collections, os, socket, subprocess, threading, time, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True)
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[2]))); srv.listen(256)
log = open(f"{d}/access.log", "a")
def serve():
    held = collections.deque()
    while True:
        a, _ = srv.accept(); a.recv(100); a.sendall(b"HTTP/1.1 200 OK\r\n\r\nok")
        held.append((time.time(), a)); log.write("GET / 200\n"); log.flush()
        while held and held[0][0] < time.time() - 1.0:
            held.popleft()[1].close()
threading.Thread(target=serve, daemon=True).start()
n = 0
while True:
    n += 1
    subprocess.run(["sh", "-c", "date > /dev/null; df -h > /dev/null"])
    time.sleep(10)
"""

CLIENTS = r"""
import collections, socket, time, sys
port = int(sys.argv[1]); held = collections.deque(); t0 = time.time(); n = 0
while True:
    n += 1
    try:
        c = socket.create_connection(("127.0.0.1", port)); c.sendall(b"GET / HTTP/1.1\r\n\r\n")
        c.recv(100); held.append(c)
    except OSError:
        pass
    while len(held) > 25:
        held.popleft().close()
    time.sleep(max(0.0, t0 + n / 20 - time.time()))
"""


class Classifier:
    """Counts what the agent saw and what the default configuration would forward."""

    def __init__(self, root_pid: int) -> None:
        self.filters = rules.Engine(rules.load([DEFAULTS / "forwarding.gen"]))
        self.tree = {str(root_pid)}
        self.lock = threading.Lock()
        self.seen: Counter[str] = Counter()
        self.kept: Counter[str] = Counter()
        self.background = 0
        self.background_kept = 0
        self.forwarded: list[dict[str, Any]] = []

    def _mine(self, ev: dict[str, Any], eid: int) -> bool:
        data = ev.get("EventData") or {}
        pid, ppid = str(data.get("ProcessId", "")), str(data.get("ParentProcessId", ""))
        if eid == 1 and ppid in self.tree:
            self.tree.add(pid)
        return pid in self.tree

    def submit(self, event: dict[str, Any]) -> None:
        ev = event["Event"]
        system = ev.get("System", {})
        eid = int(system.get("EventID", 0))
        key = f"{system.get('Channel', '')}/{eid}"
        keep = bool(ev.get("Detection")) or bool(
            (d := self.filters.evaluate(copy.deepcopy(event))) is not None and d.filtered
        )
        with self.lock:
            if not self._mine(ev, eid):
                self.background += 1
                self.background_kept += keep
                return
            self.seen[key] += 1
            if keep:
                self.kept[key] += 1
                self.forwarded.append(event)


def _store_size(events: list[dict[str, Any]]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        with EventStore(Path(tmp), fsync=False) as store:
            ep = EndpointRef("00000000-0000-4000-8000-000000000001", "bench", "10.0.0.1", "")
            for i in range(0, len(events), 500):
                store.append(events[i : i + 500], endpoint=ep, batch_id=f"b{i}")
            store.flush()
            store.tables.checkpoint()
        return sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())


def store_bytes_per_event(events: list[dict[str, Any]], at_least: int = 20_000) -> float:
    """Bytes on disk one more event takes in a real EventStore (journal + Tantivy + DuckDB):
    the store holding ``events`` (repeated up to ``at_least``, each copy with its own process
    ids, so fixed costs do not dominate) minus the empty store, per event."""
    many: list[dict[str, Any]] = []
    k = 0
    while len(many) < at_least:
        for event in events:
            e = copy.deepcopy(event)
            data = e["Event"].get("EventData") or {}
            for name in ("ProcessId", "ParentProcessId"):
                if str(data.get(name, "")).isdigit():
                    data[name] = str(int(data[name]) + k * 4_194_304)
            many.append(e)
        k += 1
    return (_store_size(many) - _store_size([])) / len(many)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", choices=("workstation", "server"), default="workstation")
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (live agent sources)")
    work_dir = tempfile.mkdtemp(prefix="heron-bench-", dir="/root")  # watched, not /tmp
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config(
            {
                # ignore_self off: the workload is a child of this process (the agent)
                "general": {
                    "data_dir": f"{tmp}/agent",
                    "log_all": True,
                    "hostname": "bench",
                    "ignore_self": False,
                },
                "rules": {"paths": [str(DEFAULTS / "linux.gen")]},
                "alert_log": {"enable": False},
                "sources": {"linux": {"file_watch_dirs": [work_dir, "/tmp", "/etc"]}},
            }
        )

        classifier: Classifier | None = None
        agent = build_agent(config, sinks=[])
        agent.start()
        time.sleep(2.0)  # sources up (proc connector subscribed, first /proc/net scan done)
        if args.workload == "workstation":
            work = subprocess.Popen([sys.executable, "-c", WORKSTATION, work_dir])
            clients = None
        else:
            work = subprocess.Popen([sys.executable, "-c", SERVER, work_dir, str(port)])
            time.sleep(1.0)
            clients = subprocess.Popen([sys.executable, "-c", CLIENTS, str(port)])
        classifier = Classifier(work.pid)
        agent.sinks.append(classifier)
        started = time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - started
        for proc in (work, clients):
            if proc is not None:
                proc.kill()
                proc.wait()
        shutil.rmtree(work_dir, ignore_errors=True)
        agent.wait_idle(timeout=30)
        agent.stop()
        agent.close()
    seen, kept = sum(classifier.seen.values()), sum(classifier.kept.values())
    per_event = store_bytes_per_event(classifier.forwarded) if classifier.forwarded else 0.0
    eps_seen, eps_kept = seen / elapsed, kept / elapsed
    day = eps_kept * 86400
    print(
        f"workload {args.workload}: {elapsed:.0f} s, agent saw {seen} events "
        f"({eps_seen:.2f}/s), default forwarding keeps {kept} ({eps_kept:.2f}/s, "
        f"{100 * kept / max(1, seen):.0f} %)"
    )
    for key, n in classifier.seen.most_common():
        print(f"  {key:40s} seen {n:6d}  forwarded {classifier.kept[key]:6d}")
    print(f"stored bytes per forwarded event: {per_event:.0f} (journal + Tantivy + DuckDB)")
    print(f"per endpoint per day: {day:,.0f} events, {day * per_event / 2**20:,.1f} MiB stored")
    print(
        f"1,000 endpoints: {eps_kept * 1000:,.0f} events/s ingest, "
        f"{day * per_event * 1000 / 2**30:,.1f} GiB/day stored"
    )
    print(
        f"background (other processes on this box, not counted): {classifier.background} "
        f"events, {classifier.background_kept} kept by the default filter"
    )


if __name__ == "__main__":
    main()
