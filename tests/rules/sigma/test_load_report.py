"""Acceptance: all 3,253 SigmaHQ rules load or are rejected with a reason; >= 97 % supported."""

from __future__ import annotations

from pathlib import Path

from rules.sigma.report import report


def test_sigmahq_load_report(sigma_dir: Path) -> None:
    rep = report([sigma_dir])
    assert rep.files == 3253
    # every file is accounted for: it gave a rule or a rejection naming the file
    seen = {str(e.source) for e in rep.rejected}
    assert len(rep.supported) + len(rep.rejected) >= rep.files
    assert all(e.reason and e.source for e in rep.rejected)
    assert not [e for e in rep.rejected if "invalid" in e.reason], "SigmaHQ rules are valid"
    assert rep.share >= 0.97, rep.reasons()
    # what is left unsupported among collected logsources is only unset placeholders
    assert {r for r in rep.reasons() if not r.startswith("logsource not collected")} <= {
        "placeholder … has no values (set them in the Sigma placeholders file)"
    }
    assert seen
