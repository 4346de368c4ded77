"""Acceptance: the corpus EVTX files, exported to Windows XML and to Winlogbeat JSON from Heron's
own EVTX reading, and dumped as `evtx_dump -o jsonl` does (pyevtx-rs records), give exactly
Gene's detections on the EVTX files (gene-oracle parity)."""

from __future__ import annotations

import copy
import gzip
from pathlib import Path
from typing import Any

import pytest

import rules
from rules.cli import main
from rules.evtx import read_evtx
from rules.inputs import InputStats, read_path

from ..conftest import GENE_RULES, detections_of, oracle_expected
from .export import to_winlogbeat, to_xml, windows_text

EVTX_ROOT = GENE_RULES.parent


def _order(oracle_records: list[dict[str, Any]]) -> dict[tuple[str, str, int], int]:
    order = {}
    for i, record in enumerate(oracle_records):
        system = record["event"]["Event"]["System"]
        order[(record["corpus_path"], system["Channel"], int(system["EventRecordID"]))] = i
    return order


def _write_xml(path: Path, events: list[dict[str, Any]], style: int) -> None:
    """Three real layouts: wevtutil (concatenated, no line breaks), Event Viewer "Save as XML"
    (UTF-16 with a declaration and an <Events> wrapper), one event per line."""
    body = [to_xml(e) for e in events]
    if style == 0:
        path.write_text("".join(body), encoding="utf-8")
    elif style == 1:
        text = '<?xml version="1.0" encoding="UTF-16"?>\r\n<Events>' + "".join(body) + "</Events>"
        path.write_bytes(text.encode("utf-16"))
    else:
        path.write_text("\n".join(body) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def exports(
    tmp_path_factory: pytest.TempPathFactory, oracle_records: list[dict[str, Any]]
) -> dict[str, Path]:
    """The corpus files read by rules.evtx and written as .xml, .jsonl (Winlogbeat) and a zip."""
    import evtx

    root = tmp_path_factory.mktemp("exports")
    files = sorted({r["corpus_path"] for r in oracle_records})
    for corpus_path in files:  # `evtx_dump -o jsonl`: pyevtx-rs records as they come
        dest = root / "evtx-dump" / (corpus_path + ".jsonl")
        dest.parent.mkdir(parents=True, exist_ok=True)
        parser = evtx.PyEvtxParser(str(EVTX_ROOT / corpus_path), number_of_threads=1)
        dest.write_text("".join(r["data"].replace("\n", " ") + "\n" for r in parser.records_json()))
    for i, corpus_path in enumerate(files):
        events = list(read_evtx(EVTX_ROOT / corpus_path))
        for kind in ("xml", "winlogbeat"):
            dest = root / kind / (corpus_path + (".xml" if kind == "xml" else ".json"))
            dest.parent.mkdir(parents=True, exist_ok=True)
            if kind == "xml":
                _write_xml(dest, events, i % 3)
            else:
                dest.write_bytes(b"".join(to_winlogbeat(e) + b"\n" for e in events))
    return {"xml": root / "xml", "winlogbeat": root / "winlogbeat", "evtx-dump": root / "evtx-dump"}


SUFFIX = {"xml": ".xml", "winlogbeat": ".json", "evtx-dump": ".jsonl"}
SHAPE = {"xml": "windows-xml", "winlogbeat": "winlogbeat-json", "evtx-dump": "evtx-dump-json"}


@pytest.mark.parametrize("kind", ["xml", "winlogbeat", "evtx-dump"])
def test_exports_give_the_oracle_detections(
    kind: str,
    exports: dict[str, Path],
    compiled_ruleset: rules.RuleSet,
    oracle_records: list[dict[str, Any]],
    oracle_containers: dict[str, list[str]],
) -> None:
    order = _order(oracle_records)
    stats = InputStats()
    events = []
    for corpus_path in sorted({k[0] for k in order}):
        for event in read_path(exports[kind] / (corpus_path + SUFFIX[kind]), tally=stats):
            events.append((corpus_path, event))
    assert len(events) == 5371 and stats.parse_errors == 0
    assert stats.shapes == {SHAPE[kind]: 5371}
    for containers, name in (
        (None, "gene-detections-corpus.jsonl"),
        (oracle_containers, "gene-detections-corpus-containers.jsonl"),
    ):
        engine = rules.Engine(compiled_ruleset, containers=containers)
        got = detections_of(engine, [(f, copy.deepcopy(e)) for f, e in events])
        got.sort(key=lambda g: order[g[:3]])
        assert got == oracle_expected(name)


def _unpad(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _unpad(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpad(v) for v in value]
    return windows_text(value) if isinstance(value, str) else value


def test_xml_reading_gives_the_evtx_rendering_field_for_field(
    exports: dict[str, Path], oracle_records: list[dict[str, Any]]
) -> None:
    """Every XML event equals its EVTX rendering, except hex padding (Windows writes `0x3e7`)."""
    expected = {
        (
            r["corpus_path"],
            r["event"]["Event"]["System"]["EventRecordID"],
            r["event"]["Event"]["System"]["Channel"],
        ): r["event"]
        for r in oracle_records
    }
    seen = 0
    for corpus_path in sorted({k[0] for k in expected}):
        for event in read_path(exports["xml"] / (corpus_path + ".xml")):
            system = event["Event"]["System"]
            want = expected[(corpus_path, system["EventRecordID"], system["Channel"])]
            assert _unpad(event) == _unpad(want)
            assert system == want["Event"]["System"]  # System is never re-padded
            seen += 1
    assert seen == 5371


def test_scan_cli_on_xml_and_zipped_winlogbeat(
    exports: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import zipfile

    archive = tmp_path / "collection.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(exports["winlogbeat"].rglob("*.json")):
            zf.write(path, path.relative_to(exports["winlogbeat"]))
    gz = tmp_path / "one.xml.gz"
    first = sorted(exports["xml"].rglob("*.xml"))[0]
    with gzip.open(gz, "wb") as fh:
        fh.write(first.read_bytes())
    compiled = str(GENE_RULES / "compiled.gen")
    for inputs in ([str(exports["xml"])], [str(archive)]):
        assert main(["scan", "-r", compiled, "--format", "summary", *inputs]) == 0
        out = capsys.readouterr()[0]
        assert "Events scanned: 5371" in out and "Positives:      1046" in out
        assert "Parse errors:   0" in out and "       0  in no known shape" in out
    assert main(["scan", "-r", compiled, "--format", "summary", str(gz)]) == 0
    assert "windows-xml" in capsys.readouterr()[0]
    evtx_zip = tmp_path / "evtx.zip"  # EVTX members are spooled to a temporary file
    with zipfile.ZipFile(evtx_zip, "w") as zf:
        for path in sorted((EVTX_ROOT / "EVTX-ATTACK-SAMPLES").rglob("*.evtx")):
            zf.write(path, path.relative_to(EVTX_ROOT))
    assert main(["scan", "-r", compiled, "--format", "summary", "--jobs", "2", str(evtx_zip)]) == 0
    out = capsys.readouterr()[0]
    assert "Events scanned: 5371" in out and "Positives:      1046" in out
    assert "    5371  evtx" in out and "Parse errors:   0" in out
