"""rules.scan: input discovery, JSON stream decoding, unit splitting, printing rule."""

from __future__ import annotations

import gzip
import io
import json
import shutil
from pathlib import Path

import pytest

import rules.scan as scanmod
from rules.engine import Detection
from rules.inputs import jsonstream
from rules.scan import ScanOptions, ScanStats, discover, iter_json_stream, should_print

from .conftest import GENE_RULES

EVTX = (
    GENE_RULES.parent
    / "EVTX-ATTACK-SAMPLES"
    / "Privilege_Escalation"
    / "win10_4703_SeDebugPrivilege_enabled.evtx"
)


def _decode(data: bytes) -> tuple[list, ScanStats]:
    stats = ScanStats()
    return list(iter_json_stream(io.BytesIO(data), stats, "t")), stats


def test_json_stream_one_per_line_pretty_and_mixed() -> None:
    pretty = json.dumps({"a": {"b": [1, 2]}}, indent=2).encode()
    values, stats = _decode(b'{"x":1}\n\n' + pretty + b'\n{"y":2} {"z":3}\n')
    assert values == [{"x": 1}, {"a": {"b": [1, 2]}}, {"y": 2}, {"z": 3}]
    assert stats.parse_errors == 0


def test_json_stream_errors_are_counted_and_skipped() -> None:
    values, stats = _decode(b'{"x":1}\n{"bad": }\n{"y":2}\n\xff\xfe\n{"z":')
    assert values == [{"x": 1}, {"y": 2}]
    assert stats.parse_errors == 3  # bad value, bad UTF-8, truncated at the end


@pytest.mark.parametrize(
    ("det", "opts", "printed"),
    [
        (None, ScanOptions(rules=()), False),
        (None, ScanOptions(rules=(), all=True), True),
        (Detection(("A",), 3), ScanOptions(rules=(), min_criticality=4), False),
        (Detection(("A",), 4), ScanOptions(rules=(), min_criticality=4), True),
        (Detection(filtered=True), ScanOptions(rules=()), True),
        (Detection(filtered=True), ScanOptions(rules=(), no_filter=True), False),
        (
            Detection(("A",), 1, filtered=True),
            ScanOptions(rules=(), no_filter=True, min_criticality=9),
            True,
        ),
    ],
)
def test_gene_printing_rule(det: Detection | None, opts: ScanOptions, printed: bool) -> None:
    assert should_print(det, opts) is printed


def test_discover_walks_dirs_sniffs_files_and_splits_jsonl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.jsonl").write_bytes(b"".join(b'{"n":%d}\n' % i for i in range(2000)))
    (tmp_path / "d" / "sub" / "a.json.gz").write_bytes(gzip.compress(b"{}"))
    (tmp_path / "d" / "notes.txt").write_text("x")
    if EVTX.exists():
        shutil.copy(EVTX, tmp_path / "d" / "sub" / "log.evtx")
        shutil.copy(EVTX, tmp_path / "renamed.bin")
    units = list(discover([str(tmp_path / "d")]))
    assert [(Path(u.path).name, u.kind) for u in units][:1] == [("b.jsonl", "json")]
    assert {Path(u.path).name for u in units} >= {"b.jsonl", "a.json.gz"}
    assert "notes.txt" not in {Path(u.path).name for u in units}
    if EVTX.exists():
        assert list(discover([str(tmp_path / "renamed.bin")]))[0].kind == "evtx"
    monkeypatch.setattr(scanmod, "SPLIT_SIZE", 1000)
    parts = [u for u in discover([str(tmp_path / "d" / "b.jsonl")], split=True)]
    assert (
        len(parts) > 5 and parts[0].start == 0 and parts[-1].end == parts[-1].size + parts[-1].start
    )
    assert all(a.end == b.start for a, b in zip(parts, parts[1:], strict=False))
    stats = ScanStats()
    total = sum(len(list(scanmod._iter_events(u, stats))) for u in parts)
    assert total == 2000 and stats.parse_errors == 0
    with pytest.raises(FileNotFoundError):
        list(discover([str(tmp_path / "missing")]))


def test_evtx_gz_input(tmp_path: Path) -> None:
    if not EVTX.exists():
        pytest.skip("corpus not present")
    gz = tmp_path / "x.evtx.gz"
    gz.write_bytes(gzip.compress(EVTX.read_bytes()))
    stats = ScanStats()
    events = list(scanmod._iter_events(next(discover([str(gz)])), stats))
    assert events and stats.parse_errors == 0
    assert all("System" in e["Event"] for e in events)


def test_unreadable_file_is_counted_not_fatal(tmp_path: Path) -> None:
    stats = ScanStats()
    unit = scanmod.Unit(str(tmp_path / "gone.jsonl"), "json")
    assert list(scanmod._iter_events(unit, stats)) == []
    assert stats.parse_errors == 1 and "gone.jsonl" in stats.errors[0]


def test_large_pretty_value_is_decoded_in_few_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = jsonstream._drain

    def counting(buf: bytes) -> tuple:
        calls.append(len(buf))
        return real(buf)

    monkeypatch.setattr(jsonstream, "_drain", counting)
    big = json.dumps(
        {"Event": {"EventData": {f"k{i}": {"v": i} for i in range(20000)}}}, indent=2
    ).encode()
    values, stats = _decode(big + b"\n" + json.dumps({"x": 1}).encode())
    assert len(values) == 2 and stats.parse_errors == 0
    assert len(calls) < 40  # doubling retries, not one decode per line (80,000 lines)
