"""Benchmark `heron scan`: events/s and peak RSS on the JSONL corpus x10 and the EVTX corpus.

Each measurement runs the real CLI (`python -m rules.cli scan`) in a fresh process with every
gene-rules rule loaded, output in jsonl format to a file (the work a user pays for), and reads
the scan time from the CLI summary and the peak RSS from `wait4` (children included, so
`--jobs 2` counts its workers).

The machines are shared, so wall-clock rates move with everybody else's load. The CPU
column divides events by the CPU seconds the scan itself used (process + workers, minus the
CPU of a run on an empty input: interpreter start and rule compilation), which is what the
code controls; with --jobs 1, `loop ev/CPU-s` divides by the CPU the CLI process reports for
its scan (`Scan CPU:` in the summary: read, decode, match, write), which does not carry the
noise of subtracting two start-ups (~7 s each with SigmaHQ, more than the scan itself). Usage:

    .venv/bin/python benchmarks/scan.py [--repeat N] [--copies 10] [--format jsonl|summary]
                                        [--sigma] [--no-formats]

`--sigma` adds every SigmaHQ rule of ../shared/corpus/sigma (all statuses; only the Windows
ones meet these Windows events) to the gene-rules, and prints what the per-event CPU means for
an agent at 100 events/s.

The input-format cases (one job) read the corpus events written as each export `rules.inputs`
reads: Windows XML (wevtutil layout) and Winlogbeat JSON by the exporters of the parity tests,
flattened JSON (NXLog/Mordor keys), CSV (one column per field), Sysmon for Linux syslog lines
(the corpus Sysmon events) and audit.log records (the test fixture, renumbered).
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
SHARED = Path(os.environ.get("HERON_SHARED") or ROOT.parent / "shared")
RULES = SHARED / "corpus" / "gene-rules" / "compiled.gen"
EVENTS = SHARED / "gene-oracle" / "corpus-events.jsonl.gz"
EVTX_DIR = SHARED / "corpus" / "EVTX-ATTACK-SAMPLES"
SIGMA = SHARED / "corpus" / "sigma"
RULE_ARGS = ["-r", str(RULES)]
_ELAPSED = re.compile(r"Elapsed:\s+([0-9.]+)s")
_EVENTS = re.compile(r"Events scanned:\s+(\d+)")
_SCAN_CPU = re.compile(r"Scan CPU:\s+([0-9.]+)s")


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


def _flat(event: dict) -> dict:
    """An event as NXLog `im_msvistalog` flattens it (Mordor datasets)."""
    ev = event["Event"]
    system = ev["System"]
    eid = system["EventID"]
    provider = system.get("Provider") or {}
    out = {
        "@timestamp": system["TimeCreated"]["SystemTime"],
        "Hostname": system["Computer"],
        "EventID": int(eid["Value"] if isinstance(eid, dict) else eid),
        "SourceName": provider.get("Name", ""),
        "Channel": system["Channel"],
        "RecordNumber": int(system["EventRecordID"]),
        "SourceModuleType": "im_msvistalog",
    }
    if provider.get("Guid"):
        out["ProviderGuid"] = "{" + provider["Guid"].strip("{}") + "}"
    data = ev.get("EventData")
    if isinstance(data, dict):
        out.update((k, v) for k, v in data.items() if isinstance(v, str) and k not in out)
    return out


def make_formats(dest: Path) -> list[tuple[str, Path]]:
    """The corpus events in each text export format (see the module docstring)."""
    import csv

    import orjson

    sys.path.insert(0, str(ROOT))
    from tests.rules.inputs.export import to_winlogbeat, to_xml

    with gzip.open(EVENTS) as fh:
        events = [orjson.loads(line)["event"] for line in fh]
    files = {
        name: dest / name
        for name in (
            "corpus.xml",
            "winlogbeat.json",
            "flat.json",
            "flat.csv",
            "sysmon.syslog",
            "audit.log",
        )
    }
    files["corpus.xml"].write_text("".join(to_xml(e) for e in events), encoding="utf-8")
    files["winlogbeat.json"].write_bytes(b"".join(to_winlogbeat(e) + b"\n" for e in events))
    flats = [_flat(e) for e in events]
    files["flat.json"].write_bytes(b"".join(orjson.dumps(f) + b"\n" for f in flats))
    columns = sorted({k for f in flats for k in f})
    with open(files["flat.csv"], "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(flats)
    sysmon = [to_xml(e) for e in events if "Sysmon" in e["Event"]["System"]["Channel"]]
    files["sysmon.syslog"].write_text(
        "".join(f"Oct 13 10:49:43 ubuntu sysmon: {x}\n" for x in sysmon), encoding="utf-8"
    )
    fixture = (ROOT / "tests" / "rules" / "inputs" / "data" / "audit.log").read_text()
    records = [line for line in fixture.splitlines() if line]
    with open(files["audit.log"], "w", encoding="utf-8") as fh:
        for i in range(800):
            for line in records:
                fh.write(re.sub(r":(\d+)\)", f":{10_000 + i})", line, count=1) + "\n")
    return [
        ("Windows XML", files["corpus.xml"]),
        ("Winlogbeat JSON", files["winlogbeat.json"]),
        ("flattened JSON", files["flat.json"]),
        ("CSV", files["flat.csv"]),
        ("Sysmon/Linux syslog", files["sysmon.syslog"]),
        ("audit.log", files["audit.log"]),
    ]


def run(
    inputs: list[str], jobs: int, fmt: str, out: Path
) -> tuple[int, float, float, float, float, float]:
    """Run one scan; return (events, scan s, wall s, CPU s incl. workers, peak RSS MiB,
    scan CPU s of the CLI process alone: read, match, write, without start-up)."""
    cmd = [
        sys.executable,
        "-m",
        "rules.cli",
        "scan",
        *RULE_ARGS,
        "--jobs",
        str(jobs),
        "--format",
        fmt,
        "--no-progress",
        "-o",
        str(out),
        *inputs,
    ]
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
    scan_cpu = float(_SCAN_CPU.search(summary).group(1))  # type: ignore[union-attr]
    return events, scan_s, wall, cpu, usage.ru_maxrss / 1024, scan_cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (best is kept)")
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--format", default="jsonl", choices=("jsonl", "summary"))
    parser.add_argument("--sigma", action="store_true", help="add every SigmaHQ rule")
    parser.add_argument("--jobs", type=int, action="append", help="job counts (default 1, 2)")
    parser.add_argument("--no-formats", action="store_true", help="skip the input-format cases")
    parser.add_argument("--make-formats", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_formats:  # in a child: Linux keeps the peak RSS across exec for the scans
        for label, path in make_formats(Path(args.make_formats)):
            print(f"{label}\t{path}")
        return 0
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
        baseline = min(
            run([str(empty)], 1, args.format, tmpdir / "out.jsonl")[3] for _ in range(args.repeat)
        )
        cases = [
            (f"JSONL corpus x{args.copies}", [str(jsonl)]),
            ("EVTX corpus (177 files)", [str(EVTX_DIR)]),
        ]
        names = RULES.name + (" + SigmaHQ (all statuses)" if args.sigma else "")
        print(
            f"rules: {names}, output format: {args.format}, "
            f"best of {args.repeat}, startup CPU {baseline:.2f}s, "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        print(
            f"{'case':<25} {'jobs':>4} {'events':>7} {'scan ev/s':>10} {'e2e ev/s':>9} "
            f"{'ev/CPU-s':>9} {'peak RSS MiB':>12} {'loop ev/CPU-s':>13}"
        )
        for label, inputs in cases:
            for jobs in args.jobs or (1, 2):
                best = None
                for _ in range(args.repeat):
                    result = run(inputs, jobs, args.format, tmpdir / "out.jsonl")
                    if best is None or result[1] < best[1]:
                        best = result
                assert best is not None
                events, scan_s, wall, cpu, rss, scan_cpu = best
                cpu_rate = events / max(cpu - baseline, 1e-3)  # workers are forked, no reload
                loop = f"{events / max(scan_cpu, 1e-3):>13,.0f}" if jobs == 1 else f"{'-':>13}"
                print(
                    f"{label:<25} {jobs:>4} {events:>7} {events / scan_s:>10,.0f} "
                    f"{events / wall:>9,.0f} {cpu_rate:>9,.0f} {rss:>12.1f} {loop}"
                )
                if args.sigma and jobs == 1:
                    print(f"{'':<25} engine CPU at 100 events/s: {100 / cpu_rate:.1%} of a core")
                if args.sigma and jobs == 1 and label.startswith("JSONL"):
                    rate = events / max(scan_cpu, 1e-3)
                    met = "met" if rate >= 20_000 else "NOT met"
                    print(
                        f"{'':<25} issue 19 target, >= 20,000 events/s in one process: read as "
                        f"loop ev/CPU-s (the scan's own CPU in the CLI process: what it does "
                        f"with a core to itself; 'scan ev/s' is wall-clock and falls with the "
                        f"box's load): {rate:,.0f}, {met}"
                    )
        if not args.no_formats:
            made = subprocess.run(
                [sys.executable, __file__, "--make-formats", str(tmpdir)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            for label, path in (line.split("\t") for line in made.splitlines()):
                best = min(
                    (
                        run([str(path)], 1, args.format, tmpdir / "out.jsonl")
                        for _ in range(args.repeat)
                    ),
                    key=lambda r: r[1],
                )
                events, scan_s, wall, cpu, rss, scan_cpu = best
                cpu_rate = events / max(cpu - baseline, 1e-3)
                print(
                    f"{label:<25} {1:>4} {events:>7} {events / scan_s:>10,.0f} "
                    f"{events / wall:>9,.0f} {cpu_rate:>9,.0f} {rss:>12.1f} "
                    f"{events / max(scan_cpu, 1e-3):>13,.0f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
