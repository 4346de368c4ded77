"""The reference data in ../shared (corpus, gene-oracle, sigma, sigma-regression).

Tests that read it carry `@pytest.mark.shared_data` (tests/conftest.py skips them, with the path
it looked for, when the data is absent) or get it through `shared_path`, which skips likewise.
HERON_SHARED points at ../shared from a checkout that is not beside it (e.g. /work/wt/<name>).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

__all__ = ["SHARED", "shared_data", "shared_path", "skip_reason"]

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("HERON_SHARED") or ROOT.parent / "shared")

shared_data = pytest.mark.shared_data


def skip_reason(*parts: str) -> str | None:
    """Why a test needing SHARED/parts cannot run, or None when the data is there."""
    path = SHARED.joinpath(*parts)
    if path.exists():
        return None
    return f"reference data not present: {path} (../shared, or set HERON_SHARED)"


def shared_path(*parts: str) -> Path:
    """SHARED/parts, or skip the calling test when it is absent."""
    reason = skip_reason(*parts)
    if reason:
        pytest.skip(reason)
    return SHARED.joinpath(*parts)
