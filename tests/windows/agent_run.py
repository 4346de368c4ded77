"""The agent started and stopped under ``winsim`` (imported only after ``enter_windows()``)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from agent.config import parse_config
from agent.service import build_agent
from agent.sinks import MemorySink
from agent.sources.etw.source import EtwSource

# Recorded events of the default providers (Sysmon, Defender, PowerShell, AMSI).
EXPECTED_PROVIDERS = {
    "Microsoft-Windows-Sysmon",
    "Microsoft-Windows-Windows Defender",
    "Microsoft-Windows-PowerShell",
    "Microsoft-Antimalware-Scan-Interface",
}


def run_agent(tmp: Path) -> dict[str, Any]:
    import etw.etw as fake_etw  # the fake, first on sys.path

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    EtwSource.CHECK_INTERVAL = 0.1  # health and lost-event checks without waiting 5 s
    expected = sum(1 for r in fake_etw.RECORDS if r["provider"] in EXPECTED_PROVIDERS)
    config = parse_config(
        {
            "general": {"data_dir": str(tmp / "data"), "log_all": True},
            "canaries": {
                "enable": True,
                "directories": [str(tmp / "canaries")],
                "files": ["passwords.txt"],
                "delete_on_stop": True,
            },
            "alert_log": {"enable": False},
        }
    )
    sink = MemorySink()
    agent = build_agent(config, sinks=[sink])
    agent.start()
    sessions_running = []
    try:
        deadline = time.monotonic() + 60
        while len(sink.events) < expected and time.monotonic() < deadline:
            sink.wait_for(lambda e: False, timeout=0.1)
        sessions_running = sorted(fake_etw.SESSIONS)
        canaries = sorted(str(p) for p in (tmp / "canaries").glob("*"))
        while agent.status()["sources"]["etw"]["lost"] == 0 and time.monotonic() < deadline:
            sink.wait_for(lambda e: False, timeout=0.1)
        status = agent.status()
    finally:
        agent.close()
    return {
        "platform": sys.platform,
        "sources": [s.name for s in agent.sources],
        "expected": expected,
        "events": len(sink.events),
        "channels": sorted({e["Event"]["System"]["Channel"] for e in sink.events}),
        "sessions_while_running": sessions_running,
        "sessions_after_stop": sorted(fake_etw.SESSIONS),
        "canaries_while_running": canaries,
        "canaries_after_stop": sorted(str(p) for p in (tmp / "canaries").glob("*")),
        "etw_status": status["sources"].get("etw", {}),
        "process_create": next(
            (
                {
                    "Description": e["Event"]["EventData"].get("Description"),
                    "Task": e["Event"]["System"]["Task"],
                }
                for e in sink.events
                if e["Event"]["System"]["EventID"] == 1
            ),
            None,
        ),
        "state": agent.state.value,
    }
