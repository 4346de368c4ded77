"""`heron-manager import`: offline evidence into the real event store, searched and hunted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.services.evidence import case_endpoint, import_files
from appliance.services.hunting import Hunting

DATA = Path(__file__).resolve().parents[1] / "rules" / "inputs" / "data"
SHARED = Path(__file__).resolve().parents[3] / "shared"
GENE = SHARED / "corpus" / "gene-rules" / "compiled.gen"
EVTX = (
    SHARED
    / "corpus"
    / "EVTX-ATTACK-SAMPLES"
    / "AutomatedTestingTools"
    / "Malware"
    / "DE_timestomp_and_dll_sideloading_and_RunPersist.evtx"
)


def _gene_rules(*names: str) -> list[dict[str, object]]:
    if not GENE.exists():
        pytest.skip("gene-rules not present")
    rules = [json.loads(line) for line in GENE.read_text().splitlines() if line.strip()]
    return [r for r in rules if r["Name"] in names]


def test_import_search_and_retro_hunt(tmp_path: Path) -> None:
    from index import EventStore

    store = EventStore(tmp_path / "events", commit_interval=0.05)
    try:
        endpoint = case_endpoint("IR-2026-042")
        files = [DATA / "mordor_flat.json", DATA / "audit.log", DATA / "sysmon_linux.syslog"]
        result = import_files(store, files, endpoint)
        assert (result.files, result.stored, result.duplicates, result.not_stored) == (3, 12, 0, 0)
        assert result.stats.shapes == {
            "flat-json": 3,
            "auditd": 7,
            "sysmon-linux-syslog": 2,
            "skipped-lines": 2,
        }
        assert result.warning() is None
        again = import_files(store, files, endpoint)  # same files: nothing stored twice
        assert (again.stored, again.duplicates) == (0, 12)
        store.flush()
        hunting = Hunting(store)
        page = hunting.search(
            "",
            since=None,
            until=None,
            endpoint=endpoint["uuid"],
            detections_only=False,
            limit=100,
            cursor=None,
        )
        assert len(page["events"]) == 12
        edr = page["events"][0]["Event"]["EdrData"]["Endpoint"]
        assert edr["Hostname"] == "IR-2026-042" and edr["Group"] == "case:IR-2026-042"
        hunt = hunting.retro_hunt(
            _gene_rules("NewAutorun", "HeurSpawnShell"),
            since=None,
            until=None,
            endpoint=endpoint["uuid"],
            max_events=1000,
            max_matches=100,
        )
        assert hunt.scanned == 12
        assert sorted(m["Event"]["Detection"]["Signature"][0] for m in hunt.matches) == [
            "HeurSpawnShell",
            "NewAutorun",
        ]
    finally:
        store.close()


def test_unknown_files_are_counted_not_stored(tmp_path: Path) -> None:
    from tests.support.memory_store import MemoryEventStore

    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"a": 1}\n{"b": 2}\n')
    result = import_files(MemoryEventStore(), [odd], case_endpoint("c"))
    assert (result.stored, result.not_stored, result.stats.unrecognised) == (0, 2, 2)
    assert result.warning() is not None and "--input-format" in result.warning()


def test_cli_import_then_search(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "heron"
    assert main(["init", "--data-dir", str(data_dir), "--json"]) == 0
    capsys.readouterr()
    files = [str(DATA / "mordor_flat.json")] + ([str(EVTX)] if EVTX.exists() else [])
    assert main(["import", "--data-dir", str(data_dir), "--endpoint", "WKS-17", *files]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["endpoint"]["hostname"] == "WKS-17" and out["endpoint"]["group"] == "import"
    assert out["stored"] >= 3 and out["unrecognised"] == 0 and out["parse_errors"] == 0
    assert (
        main(
            [
                "search",
                "--data-dir",
                str(data_dir),
                "--endpoint",
                out["endpoint"]["uuid"],
                "--limit",
                "1000",
            ]
        )
        == 0
    )
    found = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(found) == out["stored"]
    assert (
        main(["import", "--data-dir", str(data_dir), "--case", "x", str(tmp_path / "missing.evtx")])
        == 1
    )
    assert "not a file" in capsys.readouterr().err
    assert (
        main(
            [
                "import",
                "--data-dir",
                str(data_dir),
                "--case",
                "x",
                "--input-format",
                "pdf",
                files[0],
            ]
        )
        == 2
    )
    assert "--input-format 'pdf' is not one of auto, evtx" in capsys.readouterr().err
