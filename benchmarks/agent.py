"""Agent benchmark: CPU %, RSS and drops at fixed event rates (replay source).

Runs ``heron-agent run --standalone`` in a child process replaying the gene-oracle corpus events
(5,371 real EVTX-derived events, looped) against the 134 gene-rules, at each requested rate.
The replay source is switched to *lossy* (``sources.replay.lossless = false``) so it behaves
like a live source: when the pipeline cannot keep up, events are dropped and counted.

Measured over ``--duration`` seconds after ``--warmup``: CPU of the agent process as a percent
of one core (user + system time / wall time), peak RSS, events processed and dropped (from the
agent's status.json).

Usage: ``.venv/bin/python benchmarks/agent.py [--rates 100 2000] [--duration 10] [--sigma]``
Targets (issue 5): ≤ 2 % of one core at 100 events/s, no drops at 2,000 events/s, RSS ≤ 80 MB.

``--sigma`` adds the SigmaHQ rules of ../shared/corpus/sigma to the agent's ``rules.paths`` (the
agent's default statuses, stable and test: the Sigma pack as an agent runs it) and measures the
CPU the agent process really uses at each rate (issue 19 target: ≤ 3 % of one core at 100
events/s). The RSS bound of issue 5 is for gene-rules alone; with Sigma it is only reported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.procstat import start_standalone_agent, stop_agent  # noqa: E402

SHARED = Path(os.environ.get("HERON_SHARED") or ROOT.parent / "shared")
EVENTS = SHARED / "gene-oracle" / "corpus-events.jsonl.gz"
RULES = SHARED / "corpus" / "gene-rules" / "compiled.gen"
SIGMA = SHARED / "corpus" / "sigma"


def _status(data_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((data_dir / "status.json").read_text()))
    except (OSError, ValueError):
        return {}


def run_rate(rate: float, *, duration: float, warmup: float, sigma: bool = False) -> dict[str, Any]:
    paths = json.dumps([str(RULES), *([str(SIGMA)] if sigma else [])])
    with tempfile.TemporaryDirectory(prefix="heron-bench-") as tmp:
        base = Path(tmp)
        (base / "config.toml").write_text(f"""
[general]
data_dir = "{base / "data"}"
[sources]
enabled = ["replay"]
[sources.replay]
paths = ["{EVENTS}"]
rate = {rate}
loop = true
lossless = false
[rules]
paths = {paths}
[actions]
allowed = []
[limits]
max_cpu_percent = 100.0
""")
        proc = start_standalone_agent(base, log=False)
        ps = psutil.Process(proc.pid)
        try:
            deadline = time.monotonic() + 300  # Sigma: pySigma parses ~3,000 rules first
            while not _status(base / "data").get("processed") and time.monotonic() < deadline:
                time.sleep(0.2)  # started: imports, rule compilation
            time.sleep(warmup)
            before = _status(base / "data")
            t0 = time.monotonic()
            c0 = ps.cpu_times()
            peak = 0
            while time.monotonic() - t0 < duration:
                peak = max(peak, ps.memory_info().rss)
                time.sleep(0.25)
            c1 = ps.cpu_times()
            wall = time.monotonic() - t0
            time.sleep(2.2)  # let status.json catch up (written every 2 s)
            after = _status(base / "data")
        finally:
            stop_agent(proc, 10)
        cpu = (c1.user - c0.user + c1.system - c0.system) / wall * 100
        src_before = before.get("sources", {}).get("replay", {})
        src_after = after.get("sources", {}).get("replay", {})
        return {
            "rate": rate,
            "cpu_percent_one_core": round(cpu, 2),
            "rss_peak_mb": round(peak / 2**20, 1),
            "processed_total": after.get("processed", 0),
            "events_per_s_measured": round(
                (after.get("processed", 0) - before.get("processed", 0))
                / max(1e-9, after.get("time", 0) - before.get("time", 1)),
                1,
            ),
            "drops_total": src_after.get("drops", 0),
            "drops_in_window": src_after.get("drops", 0) - src_before.get("drops", 0),
            "detections_total": after.get("detections", 0),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 2000.0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--sigma", action="store_true", help="add the SigmaHQ rules")
    args = parser.parse_args(argv)
    results = [
        {
            **run_rate(r, duration=args.duration, warmup=args.warmup, sigma=args.sigma),
            "rules": "gene-rules + SigmaHQ" if args.sigma else "gene-rules",
        }
        for r in args.rates
    ]
    print(json.dumps(results, indent=1))
    ok = True
    for r in results:
        if r["rate"] <= 100 and r["cpu_percent_one_core"] > (3.0 if args.sigma else 2.0):
            ok = False
        if r["drops_total"] or (r["rss_peak_mb"] > 80 and not args.sigma):
            ok = False
    print("targets met" if ok else "targets NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
