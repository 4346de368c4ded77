"""Shared fixtures: paths to ../shared reference data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# HERON_SHARED: ../shared seen from a worktree that is not beside it (e.g. /work/wt/<name>)
SHARED = Path(os.environ.get("HERON_SHARED") or ROOT.parent / "shared")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED
