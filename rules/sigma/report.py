"""Load report for a Sigma rule tree: supported / unsupported by reason (`python -m`).

`python -m rules.sigma.report DIR...` prints the counts per reason and the share of rules
supported among the logsources Heron collects (the issue-19 goal is >= 97 %).
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..engine import Engine
from ..errors import RuleError
from ..loader import load

__all__ = ["Report", "report", "main"]

_NOT_COLLECTED = "logsource not collected"


@dataclass
class Report:
    """What loading a rule tree gave: loaded rules and every rejected one with its reason."""

    files: int = 0
    supported: list[str] = field(default_factory=list)
    rejected: list[RuleError] = field(default_factory=list)

    @property
    def not_collected(self) -> list[RuleError]:
        return [e for e in self.rejected if e.reason.startswith(_NOT_COLLECTED)]

    @property
    def unsupported(self) -> list[RuleError]:
        return [e for e in self.rejected if not e.reason.startswith(_NOT_COLLECTED)]

    @property
    def share(self) -> float:
        """Supported share of the rules whose logsource Heron collects."""
        total = len(self.supported) + len(self.unsupported)
        return len(self.supported) / total if total else 1.0

    def reasons(self) -> collections.Counter[str]:
        """Reasons, with rule-specific details (values, names) folded into one bucket."""
        out: collections.Counter[str] = collections.Counter()
        for e in self.rejected:
            reason = re.sub(
                r"'[^']*'|\"[^\"]*\"|%[^%\s]+%",
                "…",
                e.reason.split(": ", 2)[0] if not e.reason.startswith(_NOT_COLLECTED) else e.reason,
            )
            out[reason[:120]] += 1
        return out


def report(paths: Sequence[str | Path]) -> Report:
    """Load every Sigma rule under `paths` (any status) and compile it."""
    ruleset = load(paths, collect_errors=True, sigma_status=None)
    engine = Engine(timing=False)
    compile_errors = engine.load(ruleset, collect_errors=True)
    out = Report()
    out.files = sum(1 for p in paths for _ in Path(p).rglob("*.yml")) if paths else 0
    out.supported = [c.name for c in engine.rules]
    out.rejected = list(ruleset.errors) + list(ruleset.unsupported) + compile_errors
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rules.sigma.report")
    parser.add_argument("paths", nargs="+", help="Sigma rule files or directories")
    parser.add_argument("--list", action="store_true", help="list every rejected rule")
    args = parser.parse_args(argv)
    rep = report(args.paths)
    print(
        f"{rep.files} files; {len(rep.supported)} rules supported, "
        f"{len(rep.unsupported)} unsupported, {len(rep.not_collected)} with a logsource "
        f"Heron does not collect"
    )
    print(f"supported among collected logsources: {rep.share:.1%}")
    for reason, n in rep.reasons().most_common():
        print(f"{n:6d}  {reason}")
    if args.list:
        for e in rep.rejected:
            print(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
