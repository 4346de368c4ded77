"""Fixtures for the rule-engine tests: the gene-rules corpus and the Gene oracle."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

import rules
from rules.loader import read_container
from tests.conftest import SHARED

GENE_RULES = SHARED / "corpus" / "gene-rules"
ORACLE = SHARED / "gene-oracle"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not present")
    return path


@pytest.fixture(scope="session")
def gene_rules_dir() -> Path:
    return _need(GENE_RULES)


@pytest.fixture(scope="session")
def compiled_ruleset() -> rules.RuleSet:
    return rules.load(_need(GENE_RULES / "compiled.gen"))


@pytest.fixture(scope="session")
def oracle_records() -> list[dict[str, Any]]:
    with gzip.open(_need(ORACLE / "corpus-events.jsonl.gz")) as fh:
        return [orjson.loads(line) for line in fh]


@pytest.fixture(scope="session")
def oracle_containers() -> dict[str, list[str]]:
    return {
        name: read_container(_need(ORACLE / f"{name}.txt")) for name in ("blacklist", "whitelist")
    }


def oracle_expected(name: str) -> list[tuple[str, str, int, list[str], int]]:
    out = []
    with open(_need(ORACLE / name), "rb") as fh:
        for line in fh:
            d = orjson.loads(line)
            out.append(
                (d["corpus_path"], d["channel"], d["record_id"], d["signatures"], d["severity"])
            )
    return out


def detections_of(
    engine: rules.Engine, events: list[tuple[str, dict[str, Any]]]
) -> list[tuple[str, str, int, list[str], int]]:
    """Run the engine on (corpus_path, event) pairs; keep events with a signature."""
    got = []
    for path, event in events:
        det = engine.match(event)
        if det is not None and det.signatures:
            system = event["Event"]["System"]
            got.append(
                (
                    path,
                    system["Channel"],
                    int(system["EventRecordID"]),
                    list(det.signatures),
                    det.criticality,
                )
            )
    return got
