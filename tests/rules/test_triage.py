"""`heron scan` triage outputs: csv, timeline, sarif, navigator, on the EVTX corpus."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from rules.cli import main

from .conftest import GENE_RULES

SAMPLE = (
    "EVTX-ATTACK-SAMPLES/AutomatedTestingTools/Malware/"
    "DE_timestomp_and_dll_sideloading_and_RunPersist.evtx"
)


def _scan(fmt: str, tmp_path: Path, *extra: str) -> bytes:
    path = GENE_RULES.parent / SAMPLE
    if not path.exists():
        pytest.skip("corpus not present")
    out = tmp_path / f"out.{fmt}"
    assert (
        main(
            [
                "scan",
                "-r",
                str(GENE_RULES / "compiled.gen"),
                "--format",
                fmt,
                "-o",
                str(out),
                "--no-progress",
                *extra,
                str(path),
            ]
        )
        == 0
    )
    return out.read_bytes()


def test_csv_has_a_header_and_one_row_per_printed_event(tmp_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(_scan("csv", tmp_path).decode())))
    hits = [r for r in rows if r["signatures"]]
    assert len(rows) > len(hits) > 0  # filtered-only events are printed too, as in jsonl
    autorun = next(r for r in hits if r["signatures"] == "NewAutorun")
    assert autorun["computer"] == "IEWIN7" and autorun["event_id"] == "13"
    assert autorun["record_id"] == "6593" and autorun["attack"] == "T1060"
    assert "TargetObject=HKU\\S-1-5-21" in autorun["key_fields"]
    assert autorun["time"] == "2019-04-27T15:57:53.884488Z"


def test_timeline_is_sorted_with_one_line_per_detection(tmp_path: Path) -> None:
    lines = _scan("timeline", tmp_path).decode().splitlines()
    assert lines[0].split("\t")[:5] == ["time", "computer", "criticality", "rules", "attack"]
    body = [line.split("\t") for line in lines[1:]]
    assert body and [b[0] for b in body] == sorted(b[0] for b in body)
    spawn = next(b for b in body if b[3] == "HeurSpawnShell")
    assert spawn[1] == "IEWIN7" and spawn[5] == "Microsoft-Windows-Sysmon/Operational"
    assert "Image=C:\\Windows\\System32\\cmd.exe" in spawn[7]
    assert "CommandLine=cmd.exe /A" in spawn[7]


def test_sarif_document(tmp_path: Path) -> None:
    doc = json.loads(_scan("sarif", tmp_path))
    assert doc["version"] == "2.1.0"
    run = doc["runs"][0]
    rule_ids = {r["id"] for r in run["tool"]["driver"]["rules"]}
    assert {r["ruleId"] for r in run["results"]} == rule_ids
    autorun = next(r for r in run["results"] if r["ruleId"] == "NewAutorun")
    assert autorun["level"] == "error"  # criticality 8
    assert autorun["properties"]["attack"] == ["T1060"]
    assert autorun["locations"][0]["logicalLocations"][0]["name"] == "IEWIN7"


def test_navigator_layer_scores_techniques(tmp_path: Path) -> None:
    doc = json.loads(_scan("navigator", tmp_path, "--jobs", "2"))
    assert doc["domain"] == "enterprise-attack" and doc["versions"]["layer"] == "4.5"
    scores = {t["techniqueID"]: t for t in doc["techniques"]}
    assert scores["T1060"]["score"] >= 1 and "NewAutorun" in scores["T1060"]["comment"]
    assert doc["gradient"]["maxValue"] == max(t["score"] for t in doc["techniques"])
