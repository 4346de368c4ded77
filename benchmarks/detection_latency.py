"""Live detection latency on Linux: from starting a matching command to the agent's alert.

    sudo .venv/bin/python benchmarks/detection_latency.py [--commands 20]

A real `heron-agent run --standalone` with the proc connector source and one Gene rule matching a
marker in the command line. Each command is a shell waiting on its stdin (it runs until the alert
is seen), started one at a time; the latency runs from `Popen` to the alert in the agent's alert
files. Prints p50 / p95 / max and the load (target: ≤ 1 s, issue 4's "detected within one
second"; tests/agent/test_live_linux.py checks the detection itself, not its timing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.render import LINUX_CHANNEL  # noqa: E402
from agent.sinks import read_alerts  # noqa: E402
from benchmarks.procstat import start_standalone_agent, stop_agent  # noqa: E402

TOKEN = uuid.uuid4().hex[:12]


def rule() -> str:
    return json.dumps(
        {
            "Name": "LatencyMarker",
            "Tags": ["bench"],
            "Meta": {
                "Events": {LINUX_CHANNEL: [1]},
                "Criticality": 6,
                "Schema": "2.0.0",
                "LogType": "winevt",
            },
            "Matches": [f"$cl: /Event/EventData/CommandLine ~= 'heron-lat-{TOKEN}'"],
            "Condition": "$cl",
            "Actions": [],
        }
    )


def wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--commands", type=int, default=20)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="heron-latency-") as tmp:
        base = Path(tmp)
        (base / "rules").mkdir()  # alone: .toml files next to rules are read as templates
        (base / "rules" / "latency.gen").write_text(rule() + "\n")
        (base / "config.toml").write_text(f"""
[general]
data_dir = "{base / "data"}"
criticality_threshold = 5
[sources]
enabled = ["linux-proc"]
[rules]
paths = ["{base / "rules" / "latency.gen"}"]
[actions]
allowed = []
""")
        agent = start_standalone_agent(base)
        alerts = base / "data" / "alerts"
        status = base / "data" / "status.json"
        try:

            def started() -> bool:
                st = json.loads(status.read_text()) if status.exists() else {}
                return bool(st.get("sources", {}).get("linux-proc", {}).get("running"))

            wait(started, 300, "the agent's process source")
            seen: set[str] = set()

            def alerted(pid: int) -> bool:
                for a in read_alerts(alerts) if alerts.exists() else []:
                    seen.add(a["Event"]["EventData"].get("ProcessId", ""))
                return str(pid) in seen

            latencies = []
            for i in range(args.commands):
                t0 = time.monotonic()
                cmd = f"read _; true # heron-lat-{TOKEN}-{i}"
                child = subprocess.Popen(["sh", "-c", cmd], stdin=subprocess.PIPE)
                wait(partial(alerted, child.pid), 60, f"the alert of command {i}")
                latencies.append(time.monotonic() - t0)
                child.communicate(b"\n")
        except SystemExit:
            print((base / "agent.log").read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
        finally:
            stop_agent(agent)
    v = sorted(latencies)
    p95 = v[min(len(v) - 1, int(len(v) * 0.95))]
    print(
        f"detection latency over {len(v)} commands: p50 {v[len(v) // 2] * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms, max {v[-1] * 1000:.0f} ms "
        f"(load {os.getloadavg()[0]:.1f})",
        flush=True,
    )


if __name__ == "__main__":
    main()
