"""Linux sensor benchmark: the eBPF sensor side by side with the /proc + fanotify fallback.

For each sensor (``linux-ebpf``; ``linux-proc`` + ``linux-net`` + ``linux-file``) a real agent
(``python -m agent.cli run --standalone``, root) runs with ``general.log_all`` and the default
Linux rule pack; each scenario's events are read back from its alert log and scored:

* ``full`` — recorded in full (exec: image and the unique command line; connect: the port;
  DNS: the query name; file: the exact path and operation);
* ``degraded`` — an event for the item exists but is incomplete (exec without its command line);
* ``lost`` — no event; plus agent CPU (% of one core over the scenario, drain included) and RSS.

Exec scenarios also report duplicate GUIDs (a child with two process-create events) and the
share of process-create events whose ``Ancestors`` were resolved.

Scenarios (issue 17): 2,000 × ``/bin/true UNIQUE_ARG`` back to back; 200 × ``sh -c 'exit 0'``;
1,000 exec/s for 30 s (``--rate-seconds``); 500 × 0-ms TCP connects to a local listener; 200 DNS
lookups against a local DNS server (127.0.0.2:53, UDP); 1,000 file create+rename+delete in
nested directories under /tmp.

Usage (root): ``.venv/bin/python benchmarks/sensor.py [--sensors ebpf proc] [--rate-seconds 30]``
Targets: ≥ 99.9 % full execs, 0 duplicate GUIDs, ancestors ≥ 99 %, 100 % of connects, DNS
queries and file events; agent CPU ≤ 15 % of one core at 1,000 exec/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.procstat import start_standalone_agent, stop_agent  # noqa: E402

RULES = ROOT / "appliance" / "defaults" / "linux.gen"
SOURCES = {"ebpf": ["linux-ebpf"], "proc": ["linux-proc", "linux-net", "linux-file"]}
# "-quiet": production logging (detections only) for the CPU figures; only the markers, matched
# by MARKER_RULE, reach the alert log
SENSORS = [*SOURCES, *(f"{s}-quiet" for s in SOURCES)]
MARKER_RULE = json.dumps(
    {
        "Name": "BenchMarker",
        "Tags": [],
        "Meta": {
            "LogType": "winevt",
            "Events": {"Linux-Sysmon/Operational": [1]},
            "Criticality": 5,
            "Schema": "2.0.0",
        },
        "Matches": ["$m: CommandLine ~= '/bin/true (ready|end)-'"],
        "Condition": "$m",
        "Actions": [],
    }
)
Event = dict[str, Any]


class Agent:
    """One agent process and its alert log."""

    def __init__(self, sensor: str, base: Path) -> None:
        self.base = base
        self.alerts = base / "data" / "alerts" / "alerts.log"
        quiet = sensor.endswith("-quiet")
        (base / "rules").mkdir()  # rule directories are also searched for .toml templates
        (base / "rules" / "marker.gen").write_text(MARKER_RULE + "\n")
        paths = [str(p) for p in (RULES, base / "rules" / "marker.gen") if p.exists()]
        rules = f"paths = {json.dumps(paths)}"
        log_all = "false" if quiet else "true"
        sensor = sensor.removesuffix("-quiet")
        (base / "config.toml").write_text(
            textwrap.dedent(f"""
            [general]
            data_dir = "{base / "data"}"
            log_all = {log_all}
            [sources]
            enabled = {json.dumps(SOURCES[sensor])}
            [sources.linux]
            # file events of the scenario's tree only: other work on a shared host stays out
            ebpf_file_prefixes = ["/tmp/heron-bench-files-"]
            [rules]
            {rules}
            [actions]
            allowed = []
            [alert_log]
            detections_only = {"true" if quiet else "false"}
            max_bytes = 4000000000
            [limits]
            max_cpu_percent = 400.0
            max_rss_mb = 4096
        """)
        )
        self.proc = start_standalone_agent(base)
        self.ps = psutil.Process(self.proc.pid)
        self.offset = 0

    def status(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.base / "data" / "status.json").read_text()))
        except (OSError, ValueError):
            return {}

    def size(self) -> int:
        try:
            return self.alerts.stat().st_size
        except OSError:
            return 0

    def read_new(self) -> bytes:
        """Complete lines appended since the last call."""
        try:
            with open(self.alerts, "rb") as fh:
                fh.seek(self.offset)
                raw = fh.read()
        except OSError:
            return b""
        end = raw.rfind(b"\n") + 1
        self.offset += end
        return raw[:end]

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def stop(self) -> None:
        stop_agent(self.proc)


def _data(ev: Event) -> dict[str, Any]:
    return dict(ev["Event"]["EventData"])


def _eid(ev: Event) -> int:
    return int(ev["Event"]["System"]["EventID"])


def wait_ready(agent: Agent, timeout: float = 60.0) -> None:
    marker = f"ready-{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        subprocess.run(["/bin/true", marker], check=True)
        time.sleep(0.3)
        if marker.encode() in agent.read_new():
            agent.offset = agent.size()
            return
        if agent.proc.poll() is not None:
            raise SystemExit(f"agent exited: {(agent.base / 'agent.log').read_text()[-2000:]}")
    raise SystemExit("agent not ready")


def measure(agent: Agent, work: Callable[[], None]) -> tuple[list[Event], float, int, float]:
    """Run ``work``, then wait for an end marker exec to be logged (the host is never quiet).

    Returns (events, agent cpu % of one core, peak rss, seconds).
    """
    cpu0, t0 = agent.cpu(), time.monotonic()
    rss = [agent.ps.memory_info().rss]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            rss.append(agent.ps.memory_info().rss)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    work()
    marker = f"end-{uuid.uuid4().hex[:10]}"
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    again = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= again:  # repeated: the fallback sensor may miss one exec
            subprocess.run(["/bin/true", marker], check=True)
            again = time.monotonic() + 2.0
        chunk = agent.read_new()
        chunks.append(chunk)
        if marker.encode() in chunk:
            break
        time.sleep(0.2)
    settle = time.monotonic() + 1.0  # the fallback's net/file sources run in other threads
    while time.monotonic() < settle:
        time.sleep(0.2)
        chunks.append(agent.read_new())
    wall = time.monotonic() - t0
    cpu = (agent.cpu() - cpu0) / max(wall, 1e-6) * 100
    done.set()
    th.join()
    raw = b"".join(chunks)
    return [json.loads(line) for line in raw.splitlines() if line.strip()], cpu, max(rss), wall


def score_execs(
    events: list[Event], n: int, expect: Callable[[int], str], image: str
) -> dict[str, Any]:
    """Full: image and unique command line; degraded: a child of the same parent without them."""
    creates = [_data(e) for e in events if _eid(e) == 1]
    by_cmd = {expect(i): i for i in range(n)}
    full: set[int] = set()
    parents: set[str] = set()
    for d in creates:
        i = by_cmd.get(str(d.get("CommandLine", "")))
        if i is not None and d.get("Image") == image:
            full.add(i)
            parents.add(str(d.get("ParentProcessId")))
    ours = [d for d in creates if str(d.get("ParentProcessId")) in parents]
    full_pids = {
        str(d.get("ProcessId"))
        for d in ours
        if by_cmd.get(str(d.get("CommandLine", ""))) is not None
    }
    degraded = min(len({str(d.get("ProcessId")) for d in ours} - full_pids), n - len(full))
    per_pid: dict[str, set[str]] = defaultdict(set)
    for d in ours:
        per_pid[str(d.get("ProcessId"))].add(str(d.get("ProcessGuid")))
    resolved = sum(1 for d in ours if d.get("Ancestors", "?") not in ("?", ""))
    return {
        "full": len(full) / n * 100,
        "degraded": degraded / n * 100,
        "lost": (n - len(full) - degraded) / n * 100,
        "duplicate_guids": sum(1 for g in per_pid.values() if len(g) > 1),
        "ancestors": resolved / max(1, len(ours)) * 100,
    }


def run_shell(script: str) -> None:
    subprocess.run(["/bin/sh", "-c", script], check=True)


def scenario_idle(agent: Agent, seconds: float = 10.0) -> dict[str, Any]:
    """Baseline: what the rest of the host costs the agent (shared machines are not idle)."""
    events, cpu, rss, wall = measure(agent, lambda: time.sleep(seconds))
    return {"events_per_s": len(events) / wall, "cpu": cpu, "rss": rss, "seconds": wall}


def scenario_true(agent: Agent, n: int = 2000) -> dict[str, Any]:
    token = f"T{uuid.uuid4().hex[:8]}"
    events, cpu, rss, wall = measure(
        agent,
        lambda: run_shell(f"i=0; while [ $i -lt {n} ]; do /bin/true {token}-$i; i=$((i+1)); done"),
    )
    out = score_execs(events, n, lambda i: f"/bin/true {token}-{i}", "/usr/bin/true")
    return {**out, "cpu": cpu, "rss": rss, "seconds": wall}


def scenario_sh(agent: Agent, n: int = 200) -> dict[str, Any]:
    token = f"S{uuid.uuid4().hex[:8]}"
    events, cpu, rss, wall = measure(
        agent,
        lambda: run_shell(
            f"i=0; while [ $i -lt {n} ]; do sh -c 'exit 0' {token}-$i; i=$((i+1)); done"
        ),
    )
    out = score_execs(events, n, lambda i: f"sh -c exit 0 {token}-{i}", "/usr/bin/dash")
    return {**out, "cpu": cpu, "rss": rss, "seconds": wall}


def scenario_rate(agent: Agent, rate: int = 1000, seconds: float = 30.0) -> dict[str, Any]:
    token = f"R{uuid.uuid4().hex[:8]}"
    sent = [0]

    def work() -> None:
        start = time.monotonic()
        live: set[int] = set()
        i = 0
        while True:
            now = time.monotonic() - start
            if now >= seconds:
                break
            due = int(now * rate)
            while i < due:
                live.add(os.posix_spawn("/bin/true", ["/bin/true", f"{token}-{i}"], os.environ))
                i += 1
            for pid in list(live):  # only our children: the agent is a child too
                if os.waitpid(pid, os.WNOHANG)[0]:
                    live.discard(pid)
            time.sleep(0.001)
        for pid in live:
            os.waitpid(pid, 0)
        sent[0] = i

    events, cpu, rss, wall = measure(agent, work)
    n = sent[0]
    out = score_execs(events, n, lambda i: f"/bin/true {token}-{i}", "/usr/bin/true")
    return {**out, "cpu": cpu, "rss": rss, "seconds": wall, "achieved_rate": n / seconds}


def scenario_connects(agent: Agent, n: int = 500) -> dict[str, Any]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1024)
    port = srv.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                srv.accept()[0].close()
            except TimeoutError:
                continue

    th = threading.Thread(target=accept, daemon=True)
    th.start()
    code = (
        f"import socket\nfor _ in range({n}): "
        f"socket.create_connection(('127.0.0.1', {port})).close()"
    )
    events, cpu, rss, wall = measure(
        agent, lambda: subprocess.run([sys.executable, "-c", code], check=True)
    )
    stop.set()
    th.join()
    srv.close()
    seen = [
        e
        for e in events
        if _eid(e) == 3
        and _data(e).get("DestinationPort") == str(port)
        and _data(e).get("Initiated") == "true"
    ]
    full = sum(1 for e in seen if _data(e).get("Image", "-") not in ("-", ""))
    got = min(len(seen), n)
    return {
        "full": min(full, n) / n * 100,
        "degraded": (got - min(full, n)) / n * 100,
        "lost": (n - got) / n * 100,
        "cpu": cpu,
        "rss": rss,
        "seconds": wall,
    }


def _dns_answer(query: bytes) -> bytes:
    end = query.index(b"\0", 12) + 5
    answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton("127.0.0.3")
    return query[:2] + b"\x81\x80" + struct.pack(">4H", 1, 1, 0, 0) + query[12:end] + answer


def dns_server() -> Iterator[None]:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.2", 53))
    udp.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                q, peer = udp.recvfrom(512)
            except TimeoutError:
                continue
            udp.sendto(_dns_answer(q), peer)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    yield
    stop.set()
    th.join()
    udp.close()


def scenario_dns(agent: Agent, n: int = 200) -> dict[str, Any]:
    token = f"d{uuid.uuid4().hex[:8]}"
    code = textwrap.dedent(f"""
        import socket, struct
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        for i in range({n}):
            name = f"q{{i}}.{token}.example"
            labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
            s.sendto(struct.pack(">6H", i, 0x0100, 1, 0, 0, 0) + labels + b"\\0"
                     + struct.pack(">HH", 1, 1), ("127.0.0.2", 53))
            s.recvfrom(512)
    """)
    server = dns_server()
    next(server)
    try:
        events, cpu, rss, wall = measure(
            agent, lambda: subprocess.run([sys.executable, "-c", code], check=True)
        )
    finally:
        next(server, None)
    names = {f"q{i}.{token}.example" for i in range(n)}
    full = {
        str(_data(e).get("QueryName"))
        for e in events
        if _eid(e) == 22 and _data(e).get("QueryResults") == "::ffff:127.0.0.3;"
    } & names
    return {
        "full": len(full) / n * 100,
        "degraded": 0.0,
        "lost": (n - len(full)) / n * 100,
        "cpu": cpu,
        "rss": rss,
        "seconds": wall,
    }


def scenario_files(agent: Agent, n: int = 1000) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="heron-bench-files-", dir="/tmp"))
    code = textwrap.dedent(f"""
        import os
        base = {str(base)!r}
        for i in range({n}):
            d = os.path.join(base, "a", str(i % 10), "b")
            os.makedirs(d, exist_ok=True)
            p = os.path.join(d, f"f{{i}}.txt")
            with open(p, "w") as fh:
                fh.write("x")
            q = os.path.join(d, f"g{{i}}.txt")
            os.rename(p, q)
            os.unlink(q)
    """)
    try:
        events, cpu, rss, wall = measure(
            agent, lambda: subprocess.run([sys.executable, "-c", code], check=True)
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    want: set[tuple[int, str]] = set()
    for i in range(n):
        d = base / "a" / str(i % 10) / "b"
        want |= {
            (11, str(d / f"f{i}.txt")),
            (101, str(d / f"g{i}.txt")),
            (23, str(d / f"g{i}.txt")),
        }
    got = {(_eid(e), str(_data(e).get("TargetFilename"))) for e in events} & want
    return {
        "full": len(got) / len(want) * 100,
        "degraded": 0.0,
        "lost": (len(want) - len(got)) / len(want) * 100,
        "cpu": cpu,
        "rss": rss,
        "seconds": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sensors", nargs="+", default=SENSORS, choices=SENSORS)
    ap.add_argument("--rate-seconds", type=float, default=30.0)
    ap.add_argument(
        "--scenarios", nargs="+", default=["idle", "true", "sh", "rate", "connects", "dns", "files"]
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    scenarios: dict[str, Callable[[Agent], dict[str, Any]]] = {
        "idle": scenario_idle,
        "true": scenario_true,
        "sh": scenario_sh,
        "rate": lambda a: scenario_rate(a, seconds=args.rate_seconds),
        "connects": scenario_connects,
        "dns": scenario_dns,
        "files": scenario_files,
    }
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for sensor in args.sensors:
        with tempfile.TemporaryDirectory(prefix="heron-sensor-") as tmp:
            agent = Agent(sensor, Path(tmp))
            try:
                wait_ready(agent)
                mode = agent.status().get("sensor", {}).get("mode", "?")
                print(f"# sensor {sensor} (status mode: {mode})", flush=True)
                quiet = sensor.endswith("-quiet")
                for name in args.scenarios:
                    if quiet and name not in ("idle", "rate"):
                        continue
                    res = scenarios[name](agent)
                    if quiet:  # nothing but the markers is logged: only resources count
                        res = {
                            k: v
                            for k, v in res.items()
                            if k in ("cpu", "rss", "seconds", "achieved_rate")
                        }
                    results.setdefault(name, {})[sensor] = res
                    print(
                        f"{name:9s} {sensor:5s} "
                        + " ".join(
                            f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in res.items()
                            if k != "rss"
                        )
                        + f" rss={res['rss'] / 1e6:.0f}MB",
                        flush=True,
                    )
                st = agent.status()
                lost = {n: s.get("lost") for n, s in st.get("sources", {}).items()}
                print(f"# {sensor}: lost={lost} sensor={st.get('sensor', {})}", flush=True)
            finally:
                agent.stop()
    print("\nscenario   metric            " + "  ".join(f"{s:>8s}" for s in args.sensors))
    for name, by in results.items():
        for metric in (
            "full",
            "degraded",
            "lost",
            "duplicate_guids",
            "ancestors",
            "achieved_rate",
            "events_per_s",
            "cpu",
        ):
            vals = [by.get(s, {}).get(metric) for s in args.sensors]
            if all(v is None for v in vals):
                continue
            print(
                f"{name:10s} {metric:17s} "
                + "  ".join(f"{v:8.1f}" if isinstance(v, float) else f"{v!s:>8s}" for v in vals)
            )
        rss = [by.get(s, {}).get("rss", 0) / 1e6 for s in args.sensors]
        print(f"{name:10s} {'rss MB':17s} " + "  ".join(f"{v:8.0f}" for v in rss))


if __name__ == "__main__":
    main()
