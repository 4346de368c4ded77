"""Fixtures for the Sigma tests: SigmaHQ rules and regression cases in ../shared/corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "corpus"
SIGMA = CORPUS / "sigma"
REGRESSION = CORPUS / "sigma-regression"
EVTX_ATTACK = CORPUS / "EVTX-ATTACK-SAMPLES"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not present")
    return path


@pytest.fixture(scope="session")
def sigma_dir() -> Path:
    return need(SIGMA)


@pytest.fixture(scope="session")
def regression_dir() -> Path:
    return need(REGRESSION)
