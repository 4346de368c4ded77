"""Manager start-up: seconds from process start to the first answered `/healthz` (target < 2 s).

Runs `heron-manager init` once in a scratch directory, then starts `heron-manager run` --runs
times and prints, per run and as min/median, the wall seconds to the first 200 and the CPU
seconds the manager (with its index writer child) used until then. CPU time is what the program
costs when the host is oversubscribed; wall time is the user's wait.

    python benchmarks/startup.py --runs 5
    python benchmarks/startup.py --program dist/heron-manager/heron-manager   # frozen one-dir
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procstat import tree_cpu_seconds

TARGET_SECONDS = 2.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _manager_cmd(program: str | None) -> list[str]:
    if program:
        return [program]
    script = Path(sys.executable).with_name("heron-manager")
    return [str(script)] if script.exists() else [sys.executable, "-m", "appliance.cli"]


def _first_answer(url: str, ca: Path, proc: subprocess.Popen[bytes], limit: float) -> float:
    context = ssl.create_default_context(cafile=str(ca))
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if proc.poll() is not None:
            raise SystemExit(f"heron-manager exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, context=context, timeout=2) as resp:
                if resp.status == 200:
                    return time.monotonic() - t0
        except (OSError, urllib.error.URLError):
            time.sleep(0.02)
    raise SystemExit(f"no answer from {url} within {limit} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--program", help="heron-manager executable (default: this venv's)")
    parser.add_argument("--limit", type=float, default=300.0, help="give up after N s per run")
    args = parser.parse_args()
    cmd = _manager_cmd(args.program)
    with tempfile.TemporaryDirectory(prefix="heron-startup-") as tmp:
        data = Path(tmp) / "manager"
        admin, endpoint = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
        listen = ["--admin-listen", admin, "--endpoint-listen", endpoint]
        subprocess.run(
            [*cmd, "init", "--json", "--data-dir", str(data), *listen],
            check=True,
            capture_output=True,
        )
        ca = data / "pki" / "ca.pem"
        walls: list[float] = []
        cpus: list[float] = []
        for run in range(args.runs):
            proc = subprocess.Popen(
                [*cmd, "run", "--data-dir", str(data), *listen],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                wall = _first_answer(f"https://{admin}/healthz", ca, proc, args.limit)
                cpu = tree_cpu_seconds(proc.pid)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(120)
            walls.append(wall)
            cpus.append(cpu)
            print(f"run {run + 1}: first answer after {wall:.2f} s wall, {cpu:.2f} s CPU")
    load = os.getloadavg()[0]
    summary = {
        "wall_min": min(walls),
        "wall_median": statistics.median(walls),
        "cpu_min": min(cpus),
        "cpu_median": statistics.median(cpus),
        "target": TARGET_SECONDS,
        "ratio_wall_median_to_target": statistics.median(walls) / TARGET_SECONDS,
        "load": load,
    }
    print(
        f"start-up to first answer: wall min {summary['wall_min']:.2f} s, median "
        f"{summary['wall_median']:.2f} s; CPU median {summary['cpu_median']:.2f} s; "
        f"target {TARGET_SECONDS:.1f} s (median/target "
        f"{summary['ratio_wall_median_to_target']:.2f}); "
        f"load {load:.1f} on {os.cpu_count()} CPUs"
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
