"""Benchmark `heron scan`: events/s and peak RSS on the JSONL corpus x10 and the EVTX corpus.

Each measurement runs the real CLI (`python -m rules.cli scan`) in a fresh process with every
gene-rules rule loaded, output in jsonl format to a file (the work a user pays for), and reads
the scan time from the CLI summary and the peak RSS from `wait4` (children included, so
`--jobs 2` counts its workers).

The machines are shared, so wall-clock rates move with everybody else's load. The CPU
column divides events by the CPU seconds the scan itself used (process + workers, minus the
CPU of a run on an empty input: interpreter start and rule compilation), which is what the
code controls. Usage:

    .venv/bin/python benchmarks/scan.py [--repeat N] [--copies 10] [--format jsonl|summary]
                                        [--sigma]

`--sigma` adds every SigmaHQ rule of ../shared/corpus/sigma (all statuses; only the Windows
ones meet these Windows events) to the gene-rules, and prints what the per-event CPU means for
an agent at 100 events/s.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
RULES = SHARED / "corpus" / "gene-rules" / "compiled.gen"
EVENTS = SHARED / "gene-oracle" / "corpus-events.jsonl.gz"
EVTX_DIR = SHARED / "corpus" / "EVTX-ATTACK-SAMPLES"
SIGMA = SHARED / "corpus" / "sigma"
RULE_ARGS = ["-r", str(RULES)]
_ELAPSED = re.compile(r"Elapsed:\s+([0-9.]+)s")
_EVENTS = re.compile(r"Events scanned:\s+(\d+)")


def make_jsonl(dest: Path, copies: int) -> Path:
    """Unwrap the oracle corpus (`event` of each line) and replicate it `copies` times."""
    import orjson

    with gzip.open(EVENTS) as fh:
        lines = [orjson.dumps(orjson.loads(line)["event"]) + b"\n" for line in fh]
    path = dest / f"corpus-x{copies}.jsonl"
    with open(path, "wb") as out:
        for _ in range(copies):
            out.writelines(lines)
    return path


def run(inputs: list[str], jobs: int, fmt: str, out: Path
        ) -> tuple[int, float, float, float, float]:
    """Run one scan; return (events, scan s, wall s, CPU s incl. workers, peak RSS MiB)."""
    cmd = [sys.executable, "-m", "rules.cli", "scan", *RULE_ARGS, "--jobs", str(jobs),
           "--format", fmt, "--no-progress", "-o", str(out), *inputs]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    stdout = proc.stdout.read().decode() if proc.stdout else ""
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"scan failed: {' '.join(cmd)}\n{stderr}")
    summary = stdout + stderr
    events = int(_EVENTS.search(summary).group(1))  # type: ignore[union-attr]
    scan_s = float(_ELAPSED.search(summary).group(1))  # type: ignore[union-attr]
    cpu = usage.ru_utime + usage.ru_stime
    return events, scan_s, wall, cpu, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (best is kept)")
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--format", default="jsonl", choices=("jsonl", "summary"))
    parser.add_argument("--sigma", action="store_true", help="add every SigmaHQ rule")
    parser.add_argument("--jobs", type=int, action="append", help="job counts (default 1, 2)")
    args = parser.parse_args()
    if args.sigma:
        RULE_ARGS.extend(["-r", str(SIGMA), "--sigma-status", "all"])
    for needed in (RULES, EVENTS, EVTX_DIR):
        if not needed.exists():
            print(f"missing {needed}", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="heron-bench-") as tmp:
        tmpdir = Path(tmp)
        jsonl = make_jsonl(tmpdir, args.copies)
        empty = tmpdir / "empty.jsonl"
        empty.write_bytes(b"")
        baseline = min(run([str(empty)], 1, args.format, tmpdir / "out.jsonl")[3]
                       for _ in range(args.repeat))
        cases = [(f"JSONL corpus x{args.copies}", [str(jsonl)]),
                 ("EVTX corpus (177 files)", [str(EVTX_DIR)])]
        names = RULES.name + (" + SigmaHQ (all statuses)" if args.sigma else "")
        print(f"rules: {names}, output format: {args.format}, "
              f"best of {args.repeat}, startup CPU {baseline:.2f}s, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"{'case':<25} {'jobs':>4} {'events':>7} {'scan ev/s':>10} {'e2e ev/s':>9} "
              f"{'ev/CPU-s':>9} {'peak RSS MiB':>12}")
        for label, inputs in cases:
            for jobs in args.jobs or (1, 2):
                best = None
                for _ in range(args.repeat):
                    result = run(inputs, jobs, args.format, tmpdir / "out.jsonl")
                    if best is None or result[1] < best[1]:
                        best = result
                assert best is not None
                events, scan_s, wall, cpu, rss = best
                cpu_rate = events / max(cpu - baseline, 1e-3)  # workers are forked, no reload
                print(f"{label:<25} {jobs:>4} {events:>7} {events / scan_s:>10,.0f} "
                      f"{events / wall:>9,.0f} {cpu_rate:>9,.0f} {rss:>12.1f}")
                if args.sigma and jobs == 1:
                    print(f"{'':<25} engine CPU at 100 events/s: {100 / cpu_rate:.1%} of a core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
