"""Fixtures for the agent tests: configs under tmp_path, rule snippets, corpus paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig, parse_config
from tests.conftest import SHARED

ROOT = Path(__file__).resolve().parents[2]

LINUX_CHANNEL = "Linux-Sysmon/Operational"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared is not present")


def gene_rule(
    name: str,
    matches: list[str],
    condition: str,
    *,
    events: dict[str, list[int]],
    criticality: int = 8,
    actions: list[str] | None = None,
    filter_: bool = False,
) -> str:
    """One Gene rule as a JSON line (absolute paths, LogType winevt)."""
    meta: dict[str, Any] = {
        "Events": events,
        "Criticality": criticality,
        "Schema": "2.0.0",
        "LogType": "winevt",
    }
    if filter_:
        meta["Filter"] = True
    return json.dumps(
        {
            "Name": name,
            "Tags": ["test"],
            "Meta": meta,
            "Matches": matches,
            "Condition": condition,
            "Actions": actions or [],
        }
    )


def make_config(tmp_path: Path, **sections: dict[str, Any]) -> AgentConfig:
    data: dict[str, Any] = {"general": {"data_dir": str(tmp_path / "data")}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data)


@pytest.fixture
def config_factory(tmp_path: Path):  # type: ignore[no-untyped-def]
    def factory(**sections: dict[str, Any]) -> AgentConfig:
        return make_config(tmp_path, **sections)

    return factory
