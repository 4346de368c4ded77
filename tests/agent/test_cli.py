"""`heron-agent` wiring: the link's commands are always there; a missing dependency is an error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent import cli

ROOT = Path(__file__).resolve().parents[2]

# `None` in sys.modules makes `import cryptography` raise ModuleNotFoundError, as on a host
# where the package is not installed.
WITHOUT_CRYPTOGRAPHY = """
import sys
sys.modules["cryptography"] = None
from agent.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _without_cryptography(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_CRYPTOGRAPHY, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_link_commands_are_registered() -> None:
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    assert {"run", "report", "status", "config", "enroll", "service", "link"} <= set(
        sub.choices or {}
    )


@pytest.mark.parametrize(
    "argv", [["run", "--standalone"], ["run"], ["enroll", "--help"], ["status"]]
)
def test_missing_cryptography_fails_clearly_instead_of_running_without_the_link(
    tmp_path: Path, argv: list[str]
) -> None:
    data = tmp_path / "data"
    out = _without_cryptography(*argv, "--data-dir", str(data))
    assert out.returncode == cli.EXIT_RUNTIME, out.stderr
    assert "heron-agent: missing dependency 'cryptography'" in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert not data.exists()  # nothing ran: no standalone agent, no status, no queue


def test_the_same_command_runs_with_cryptography(tmp_path: Path) -> None:
    """The control: the harness itself is not what fails."""
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "config", "--dump"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0 and "[general]" in out.stdout, out.stderr
