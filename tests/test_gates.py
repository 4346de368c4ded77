"""Quality gates from STYLE.md §20: ruff (lint) and mypy --strict run as part of the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FORMATTED = ("rules", "index", "agent", "appliance", "tests", "benchmarks", "build", "packaging")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    out = _run(str(BIN / "ruff"), "check", "rules", "index", "agent", "appliance", "tests")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_ruff_format_is_applied() -> None:
    out = _run(str(BIN / "ruff"), "format", "--check", *FORMATTED)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_mypy_strict_is_clean() -> None:
    out = _run(str(BIN / "mypy"))
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
