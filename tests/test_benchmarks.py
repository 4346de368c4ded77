"""The benchmark scripts still run (tiny sizes; the figures themselves are not checked here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def _run(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_search_benchmark_runs(tmp_path: Path) -> None:
    out = _run("benchmarks/search.py", "--events", "3000", "--runs", "2", "--dir", str(tmp_path))
    assert "ingest: 3,000 events" in out and "bytes/event" in out
    assert "term sha256" in out and "sql per-hour count 1d" in out


def test_ingest_benchmark_runs() -> None:
    out = _run("benchmarks/ingest.py", "--agents", "2", "--batch", "200", "--seconds", "2",
               "--client-procs", "1")
    assert "0 errors" in out and "durable events/s:" in out
