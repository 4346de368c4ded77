"""`heron scan` and `heron rules ...`, run in process through `rules.cli.main`."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import pytest

from rules.cli import main

from .conftest import GENE_RULES, ORACLE

COMPILED = str(GENE_RULES / "compiled.gen")
EVTX_DIR = GENE_RULES.parent / "EVTX-ATTACK-SAMPLES" / "Execution"


@pytest.fixture(scope="module")
def corpus_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not ORACLE.exists():
        pytest.skip("oracle not present")
    path = tmp_path_factory.mktemp("scan") / "corpus.jsonl"
    with gzip.open(ORACLE / "corpus-events.jsonl.gz") as src, open(path, "wb") as dst:
        for line in src:
            dst.write(orjson.dumps(orjson.loads(line)["event"]) + b"\n")
    return path


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line]


def test_scan_jsonl_prints_gene_selection(
    corpus_jsonl: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["scan", "-r", COMPILED, str(corpus_jsonl)]) == 0
    out, err = capsys.readouterr()
    printed = _lines(out)
    with_det = [e for e in printed if "Detection" in e["Event"]]
    assert len(printed) == 1046 + 456 and len(with_det) == 1046
    assert "Positives:      1046" in err and "Events scanned: 5371" in err
    assert main(["scan", "-r", COMPILED, "--no-filter", "-c", "8", str(corpus_jsonl)]) == 0
    printed = _lines(capsys.readouterr()[0])
    high = [e for e in printed if e["Event"]["Detection"]["Criticality"] >= 8]
    assert len(high) == 118 + 3 + 117  # oracle severity histogram: 8, 9 and 10
    # GENE: filtered events with a signature are printed whatever their criticality
    low = [e for e in printed if e["Event"]["Detection"]["Criticality"] < 8]
    assert all(e["Event"]["System"]["EventID"] == "1" for e in low)
    assert "ATTACK" not in json.dumps(printed)
    assert main(["scan", "-r", COMPILED, "--attack", "-c", "10", str(corpus_jsonl)]) == 0
    attack = [
        e["Event"]["Detection"]["ATTACK"]
        for e in _lines(capsys.readouterr()[0])
        if "ATTACK" in e["Event"].get("Detection", {})
    ]
    assert attack and all(len({a["ID"] for a in block}) == len(block) for block in attack)


def test_scan_keeps_unknown_keys_and_reads_gz_dirs_and_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    ev = json.loads(
        (GENE_RULES / "tests" / "LargeBase64.json").read_text().split("\n}\n")[0] + "\n}"
    )
    ev["Custom"] = {"x": 1}
    (tmp_path / "d").mkdir()
    with gzip.open(tmp_path / "d" / "e.json.gz", "wt") as fh:
        fh.write(json.dumps(ev, indent=2) + "\n" + json.dumps(ev))
    assert main(["scan", "-r", COMPILED, str(tmp_path / "d")]) == 0
    printed = _lines(capsys.readouterr()[0])
    assert len(printed) == 2 and printed[0]["Custom"] == {"x": 1}
    assert "LargeBase64" in printed[0]["Event"]["Detection"]["Signature"]
    import io
    import sys

    monkeypatch.setattr(
        sys, "stdin", io.TextIOWrapper(io.BytesIO(json.dumps(ev).encode() + b"\n{broken\n"))
    )
    assert main(["scan", "-r", COMPILED, "--all", "-"]) == 0
    out, err = capsys.readouterr()
    assert len(_lines(out)) == 1 and "Parse errors:   1" in err


def test_scan_evtx_table_and_summary(capsys: pytest.CaptureFixture) -> None:
    assert main(["scan", "-r", COMPILED, "--format", "table", str(EVTX_DIR)]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("TIME") and "Microsoft-Windows-Sysmon/Operational" in out
    assert main(["scan", "-r", COMPILED, "--format", "summary", str(EVTX_DIR)]) == 0
    out, _ = capsys.readouterr()
    assert "Hits per rule:" in out and "Events scanned:" in out


def test_scan_jobs_2_gives_the_same_output(
    corpus_jsonl: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import rules.scan as scanmod

    monkeypatch.setattr(scanmod, "SPLIT_SIZE", 256 * 1024)  # force several units
    one, two = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    assert main(["scan", "-r", COMPILED, "-o", str(one), str(corpus_jsonl)]) == 0
    assert main(["scan", "-r", COMPILED, "-j", "2", "-o", str(two), str(corpus_jsonl)]) == 0
    err = capsys.readouterr()[1]
    assert one.read_bytes() == two.read_bytes()
    assert err.count("Positives:      1046") == 2


def test_bad_rule_stops_unless_skipped(
    tmp_path: Path, corpus_jsonl: Path, capsys: pytest.CaptureFixture
) -> None:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    good = (GENE_RULES / "compiled.gen").read_text().splitlines()[0]
    bad = json.loads(good)
    bad["Name"], bad["Condition"] = "Broken", "$net and and $nope"
    (rules_dir / "r.gen").write_text(good + "\n" + json.dumps(bad) + "\n")
    assert main(["scan", "-r", str(rules_dir), str(corpus_jsonl)]) == 2
    err = capsys.readouterr()[1]
    assert f"{rules_dir / 'r.gen'}:2" in err and "'Broken'" in err and "$nope" in err
    assert (
        main(
            [
                "scan",
                "-r",
                str(rules_dir),
                "--skip-bad-rules",
                "--format",
                "summary",
                str(corpus_jsonl),
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert "bad rule skipped" in err and "Rules loaded:   1" in out


def test_rules_test_mode(capsys: pytest.CaptureFixture) -> None:
    rules_dir = str(GENE_RULES / "rules")
    test_file = str(GENE_RULES / "tests" / "LargeBase64.json")
    assert main(["rules", "test", "-r", rules_dir, "-n", "LargeBase64", test_file]) == 0
    assert capsys.readouterr()[0] == ""
    assert main(["rules", "test", "-r", rules_dir, "-n", "Ping.exe", test_file]) == 1
    assert len(_lines(capsys.readouterr()[0])) > 0


def test_rules_verify_list_dump(capsys: pytest.CaptureFixture) -> None:
    rules_dir = str(GENE_RULES / "rules")
    assert main(["rules", "verify", "-r", rules_dir]) == 0
    out = capsys.readouterr()[0]
    assert "134 rules loaded, 0 errors" in out and "condition-quirk rule 'LargeCL512'" in out
    assert main(["rules", "list", "-r", COMPILED]) == 0
    assert len(capsys.readouterr()[0].splitlines()) == 134
    assert main(["rules", "dump", "-r", rules_dir, ".*"]) == 0
    dumped = capsys.readouterr()[0]
    expected = (
        (GENE_RULES / "compiled.gen")
        .read_text()
        .replace('"Tags":null', '"Tags":[]')
        .replace('"Computers":null', '"Computers":[]')
    )
    # byte-identical to Gene's dump (Go escaping included) except Meta.Comments, which
    # gene v2.x dropped and Heron keeps
    assert _drop_comments(dumped) == expected.splitlines()


def _drop_comments(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        obj = json.loads(line)
        if obj["Meta"].pop("Comments", None) is not None:
            line = (
                orjson.dumps(obj)
                .decode()
                .replace("<", "\\u003c")
                .replace(">", "\\u003e")
                .replace("&", "\\u0026")
            )
        out.append(line)
    return out


def test_every_cli_command_and_option_is_documented() -> None:
    import argparse

    from rules.cli import build_parser

    docs = (Path(__file__).resolve().parents[2] / "docs" / "rules.md").read_text()
    parser = build_parser()
    missing = []

    def walk(p: argparse.ArgumentParser, prefix: str) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    if f"{prefix} {name}".strip() not in docs:
                        missing.append(f"{prefix} {name}")
                    walk(sub, f"{prefix} {name}")
            for opt in action.option_strings:
                if opt.startswith("--") and opt not in ("--help", "--verbose") and opt not in docs:
                    missing.append(f"{prefix} {opt}")

    walk(parser, "heron")
    assert missing == []


def test_rules_test_mode_rejects_broken_event_files(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1}\n{bad')
    rules_dir = str(GENE_RULES / "rules")
    assert main(["rules", "test", "-r", rules_dir, "-n", "LargeBase64", str(bad)]) == 2
    assert f"{bad}:2" in capsys.readouterr()[1]
    assert main(["rules", "test", "-r", rules_dir, "-n", "NoSuchRule", str(bad)]) == 2
