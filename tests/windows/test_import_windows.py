"""Every module of rules, index, appliance and agent imports on (simulated) Windows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WINSIM = Path(__file__).resolve().parent / "winsim.py"


def test_every_module_imports_without_posix_modules() -> None:
    out = subprocess.run(
        [sys.executable, str(WINSIM), "import-all"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["platform"] == "win32"
    assert result["failed"] == {}


def test_agent_report_command_runs(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(WINSIM), "report", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"rc": 0}
    assert "processes" in json.loads((tmp_path / "r.json").read_text())
