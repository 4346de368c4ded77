"""A few hundred simulated endpoints (benchmarks/fleet.py) against a real manager subprocess."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.support.procs import run_benchmark

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(900)
def test_300_endpoints_long_poll_keep_alive_and_old_agents(tmp_path: Path) -> None:
    """240 agents long-poll, 60 poll as the previous version did; commands reach both kinds,
    every polling connection is the one opened at the start (no reconnect: keep-alive on 204s
    too), no long-poll is answered early without a command, and nothing fails."""
    cmd = [sys.executable, "benchmarks/fleet.py", "--n", "300", "--old-share", "0.2",
           "--seconds", "8", "--settle", "2", "--commands", "10", "--json",
           "--ramp-limit", "400", "--deliver-limit", "120",
           "--cache", str(tmp_path / "cache")]  # fmt: skip
    out = run_benchmark(*cmd[1:], timeout=840)
    res = json.loads(out.strip().splitlines()[-1])
    assert res["connected"] == 300 and res["errors"] == {}, res
    assert res["commands"] > 0 and res["delivered"] == res["commands"], res
    assert res["command_ms"] and res["old_command_ms"], res  # both kinds got commands
    assert res["poll_handshakes"] == 300, res  # keep-alive: one connection per agent, never redone
    assert res["long_polls"] > 0 and res["long_poll_early"] == 0, res  # held, not answered at once
    assert res["polls"] > 0, res  # the old agents' plain polls were answered
    # update checks open short connections: each resumes the TLS session of its agent's
    # long-poll connection (tickets), no second full handshake per agent
    updates = res["handshakes"] - res["poll_handshakes"]
    assert updates > 0 and res["resumed"] >= 0.9 * updates, res
