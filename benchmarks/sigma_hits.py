"""Sigma detections per level on the shared corpus (the issue-19 false-positive figures).

Runs every Windows SigmaHQ rule of ../shared/corpus/sigma (all statuses, or `--status`) over the
177 EVTX-ATTACK-SAMPLES files and the gene-rules test events, and prints per level the matched
events, (event, rule) hits and distinct rules that fired. These are attack recordings, so a hit
is not necessarily false: the table is the noise a defender would triage. Usage:

    .venv/bin/python benchmarks/sigma_hits.py [--status stable --status test] [--top 10]
"""

from __future__ import annotations

import argparse
import collections
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
WINDOWS = (
    "rules/windows",
    "rules-emerging-threats",
    "rules-threat-hunting/windows",
    "rules-placeholder/windows",
)


def _events() -> Iterator[tuple[str, Any]]:
    from rules.evtx import read_evtx
    from rules.loader import iter_json_objects

    for path in sorted((CORPUS / "EVTX-ATTACK-SAMPLES").rglob("*.evtx")):
        for ev in read_evtx(path):
            yield "evtx", ev
    for path in sorted((CORPUS / "gene-rules" / "tests").glob("*.json")):
        for _, ev in iter_json_objects(path.read_text(encoding="utf-8"), str(path)):
            yield "gene-tests", ev


def main() -> int:
    import rules

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--status", action="append", help="Sigma statuses (default all)")
    parser.add_argument("--top", type=int, default=10, help="noisiest rules to list")
    args = parser.parse_args()
    roots = [CORPUS / "sigma" / r for r in WINDOWS if (CORPUS / "sigma" / r).exists()]
    ruleset = rules.load(roots, collect_errors=True, sigma_status=args.status)
    engine = rules.Engine(timing=False)
    engine.load(ruleset, collect_errors=True)
    level = {c.name: str(c.rule.extra.get("level", "")) for c in engine.rules}
    hits: collections.Counter[tuple[str, str]] = collections.Counter()
    events: collections.Counter[tuple[str, str]] = collections.Counter()
    fired: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
    per_rule: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    for source, ev in _events():
        total[source] += 1
        det = engine.evaluate(ev)
        if det is None or not det.signatures:
            continue
        for lv in {level[s] for s in det.signatures}:
            events[(source, lv)] += 1
        for s in det.signatures:
            hits[(source, level[s])] += 1
            fired[(source, level[s])].add(s)
            per_rule[s] += 1
    print(
        f"{engine.rule_count} Windows Sigma rules (status: {args.status or 'all'}); "
        f"events: {dict(total)}"
    )
    print(f"{'source':<11} {'level':<14} {'events':>7} {'hits':>6} {'rules':>6}")
    for source in total:
        for lv in ("critical", "high", "medium", "low", "informational"):
            print(
                f"{source:<11} {lv:<14} {events[(source, lv)]:>7} {hits[(source, lv)]:>6} "
                f"{len(fired[(source, lv)]):>6}"
            )
    print("noisiest rules:")
    for name, n in per_rule.most_common(args.top):
        print(f"{n:6d}  [{level[name]}] {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
