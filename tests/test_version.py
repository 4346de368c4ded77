"""The version string is declared once in pyproject and mirrored in the wire contract."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from rules import wire

ROOT = Path(__file__).resolve().parent.parent


def test_wire_version_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert wire.HERON_VERSION == project["version"]
    assert wire.HERON_VERSION in wire.USER_AGENT


@pytest.mark.parametrize("module", ["rules.cli", "agent.cli", "appliance.cli"])
def test_cli_version_flag(module: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", module, "--version"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert wire.HERON_VERSION in out.stdout
