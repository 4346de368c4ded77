"""Suite-wide hooks: the `shared_data` marker and the path to ../shared reference data."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.shared import SHARED, shared_path, skip_reason

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["ROOT", "SHARED"]

# Fixtures that hand out ../shared data: a test using one is marked `shared_data` automatically.
SHARED_FIXTURES = frozenset(
    {
        "shared_dir",
        "gene_rules_dir",
        "compiled_ruleset",
        "oracle_records",
        "oracle_containers",
        "sigma_dir",
        "regression_dir",
        "corpus",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SHARED_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.shared_data)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("shared_data"):
        reason = skip_reason(*mark.args)
        if reason:
            pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return shared_path()
