"""Fixtures for the Sigma tests: SigmaHQ rules and regression cases in ../shared/corpus."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SHARED

CORPUS = SHARED / "corpus"
SIGMA = CORPUS / "sigma"
REGRESSION = CORPUS / "sigma-regression"
EVTX_ATTACK = CORPUS / "EVTX-ATTACK-SAMPLES"


SYSMON = "Microsoft-Windows-Sysmon/Operational"


def sysmon_event(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A Sysmon process-creation event (EID 1) with `fields` as its EventData."""
    return {
        "Event": {
            "System": {
                "Channel": SYSMON,
                "EventID": "1",
                "TimeCreated": {"SystemTime": "2024-01-01T00:00:00Z"},
            },
            "EventData": dict(fields),
        }
    }


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference data not present: {path} (../shared, or set HERON_SHARED)")
    return path


@pytest.fixture(scope="session")
def sigma_dir() -> Path:
    return need(SIGMA)


@pytest.fixture(scope="session")
def regression_dir() -> Path:
    return need(REGRESSION)
