"""Steady-state match loop with Sigma: events per CPU-second once every block is compiled.

    .venv/bin/python benchmarks/sigma_loop.py [--passes 5] [--limit N] [--rules PATH ...]

Loads gene-rules plus every SigmaHQ rule of ../shared/corpus/sigma (all statuses, as
`benchmarks/scan.py --sigma`), decodes the JSONL corpus (one copy, 5,371 events) once, and runs
`Engine.match` over it in this process: a first pass compiles the blocks (its CPU is printed
apart), then `--passes` timed passes two ways, alternating:

- `warm`: the per-field memos of the Sigma index kept (values repeat across passes, as the
  corpus x10 of `scan.py` repeats them);
- `no memo`: memos off (`rules.sigma.block.MEMO_ENTRIES = 0`), so every value is scanned as
  if never seen: what fresh events cost.

What `heron scan` adds (reading, JSON decoding, writing) is left out: see `scan.py`.
"""

from __future__ import annotations

import argparse
import gzip
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rules.scan import ScanOptions, build_engine  # noqa: E402
from rules.sigma import block  # noqa: E402

SHARED = Path(os.environ.get("HERON_SHARED") or ROOT.parent / "shared")
RULES = [SHARED / "corpus" / "gene-rules" / "compiled.gen", SHARED / "corpus" / "sigma"]
EVENTS = SHARED / "gene-oracle" / "corpus-events.jsonl.gz"


def timed_pass(match: object, events: list[object]) -> float:
    """CPU seconds of one pass of `match` over `events`."""
    started = time.process_time()
    for event in events:
        match(event)  # type: ignore[operator]
    return time.process_time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--limit", type=int, default=0, help="first N events only")
    parser.add_argument("--rules", nargs="+", type=Path, default=RULES)
    args = parser.parse_args()
    with gzip.open(EVENTS) as fh:
        events = [orjson.loads(line)["event"] for line in fh]
    if args.limit:
        events = events[: args.limit]
    opts = ScanOptions(rules=tuple(map(str, args.rules)), sigma_status=None)
    engine, _ = build_engine(opts)
    print(
        f"rules: {len(engine.rules)}, events per pass: {len(events)}, load {os.getloadavg()[0]:.1f}"
    )
    first = timed_pass(engine.match, events)
    print(f"first pass (compiles the blocks): {first:.3f} CPU-s")
    rates: dict[str, list[float]] = {"warm": [], "no memo": []}
    default = block.MEMO_ENTRIES
    for _ in range(args.passes):
        for label, entries in (("warm", default), ("no memo", 0)):
            block.MEMO_ENTRIES = entries
            timed_pass(engine.match, events)  # settles the memos for this mode
            rates[label].append(len(events) / max(timed_pass(engine.match, events), 1e-9))
    block.MEMO_ENTRIES = default
    for label, values in rates.items():
        print(
            f"{label:>8}: median {statistics.median(values):,.0f} events/CPU-s "
            f"(min {min(values):,.0f}, max {max(values):,.0f}, {len(values)} passes)"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MiB, load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
