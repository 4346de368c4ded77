"""The agent starts, runs the ETW source over a fake pywintrace and stops, on simulated Windows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

WINSIM = Path(__file__).resolve().parent / "winsim.py"


def _simulate(tmp_path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(WINSIM), "agent", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_agent_starts_and_stops_with_etw_and_canaries(tmp_path: Path) -> None:
    r = _simulate(tmp_path)
    assert r["platform"] == "win32"
    assert r["sources"] == ["etw"]  # the Windows default
    assert r["events"] == r["expected"] == 8  # every recorded event of the default providers
    assert "Microsoft-Windows-Sysmon/Operational" in r["channels"]
    assert r["sessions_while_running"] == ["Heron-EDR"]
    assert r["sessions_after_stop"] == []  # the ETW session is stopped with the agent
    assert r["canaries_while_running"] == [str(tmp_path / "canaries" / "passwords.txt")]
    assert r["canaries_after_stop"] == []  # delete_on_stop
    assert r["state"] == "closed"


def test_agent_keeps_what_pywintrace_loses_and_reports_what_fails(tmp_path: Path) -> None:
    """Issue 26 point 7 through the fake pywintrace (its real _processEvent steps)."""
    r = _simulate(tmp_path)
    # Sysmon's own Description property, not the event message pywintrace writes over it,
    # and the task name as the manifest spells it, not pywintrace's upper-cased copy
    assert r["process_create"]["Description"] == "Windows Command Processor"
    assert r["process_create"]["Task"]["Name"] == "Process Create (rule: ProcessCreate)"
    etw = r["etw_status"]
    assert etw["lost"] == 3  # ETW's own EventsLost + RealTimeBuffersLost (ETW.query)
    # EventLog-Security cannot be opened (OpenTrace fails): reported, the source runs on
    assert "EventLog-Security" in etw["error"] and etw["running"]
