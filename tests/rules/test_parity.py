"""Acceptance: Heron gives exactly Gene's detections on the oracle corpus and gene-rules tests."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

import rules
from rules.loader import iter_json_objects

from .conftest import GENE_RULES, detections_of, oracle_expected

TEST_FILES = sorted((GENE_RULES / "tests").glob("*.json")) if GENE_RULES.exists() else []


def test_compiled_gen_loads_134_rules(compiled_ruleset: rules.RuleSet) -> None:
    engine = rules.Engine(compiled_ruleset)
    assert engine.rule_count == 134
    disabled = sorted(c.name for c in engine.rules if c.disabled)
    assert disabled == [
        "BlacklistedDomain",
        "BlacklistedHash",
        "BlacklistedImphash",
        "DomainInMisp",
        "NotWhitelisted",
        "SysmonDomainInMisp",
    ]
    assert sum(1 for c in engine.rules if c.is_filter) == 1


def test_rules_directory_loads_like_compiled_gen(
    gene_rules_dir: Path, compiled_ruleset: rules.RuleSet
) -> None:
    ruleset = rules.load(gene_rules_dir / "rules")
    engine = rules.Engine(ruleset)
    assert engine.rule_count == 134
    assert not ruleset.errors
    compiled = {r.name: r for r in compiled_ruleset}
    for rule in ruleset:
        if rule.meta.disable:
            assert rule.name not in compiled
            continue
        # templates substituted exactly as Gene's dump did
        assert compiled[rule.name].matches == rule.matches, rule.name
        assert compiled[rule.name].condition == rule.condition
        assert compiled[rule.name].criticality == rule.criticality


def test_there_are_57_rule_test_files() -> None:
    if not TEST_FILES:
        pytest.skip("gene-rules tests not present")
    assert len(TEST_FILES) == 57


@pytest.mark.parametrize("path", TEST_FILES, ids=[p.stem for p in TEST_FILES])
def test_gene_rules_test_mode(path: Path, gene_rules_dir: Path) -> None:
    """`gene -test -r rules -n NAME -j tests/NAME.json`: every event must raise an alert."""
    ruleset = rules.load(gene_rules_dir / "rules").select(names=[path.stem])
    engine = rules.Engine(ruleset)
    assert engine.rule_count == 1
    events = [obj for _, obj in iter_json_objects(path.read_text(encoding="utf-8"))]
    assert events
    unmatched = [e for e in events if not ((d := engine.match(e)) and d.signatures)]
    assert unmatched == []


@pytest.mark.parametrize(
    "mode",
    [{}, {"timing": False}, {"timing_sample": 1}],
    ids=["sampled-timing", "inlined-groups", "per-rule-loop"],
)
def test_oracle_parity_without_containers(
    compiled_ruleset: rules.RuleSet, oracle_records: list[dict], mode: dict
) -> None:
    engine = rules.Engine(compiled_ruleset, **mode)
    events = [(r["corpus_path"], copy.deepcopy(r["event"])) for r in oracle_records]
    got = detections_of(engine, events)
    expected = oracle_expected("gene-detections-corpus.jsonl")
    assert len(expected) == 1046
    assert got == expected
    assert engine.scanned == 5371 and engine.positives == 1046


def test_oracle_parity_with_containers(
    compiled_ruleset: rules.RuleSet,
    oracle_records: list[dict],
    oracle_containers: dict[str, list[str]],
) -> None:
    engine = rules.Engine(compiled_ruleset, containers=oracle_containers)
    assert sorted(c.name for c in engine.rules if c.disabled) == [
        "DomainInMisp",
        "SysmonDomainInMisp",
    ]
    events = [(r["corpus_path"], copy.deepcopy(r["event"])) for r in oracle_records]
    got = detections_of(engine, events)
    expected = oracle_expected("gene-detections-corpus-containers.jsonl")
    assert len(expected) == 2089
    assert got == expected


def test_filter_only_events_are_left_untouched(
    compiled_ruleset: rules.RuleSet, oracle_records: list[dict]
) -> None:
    engine = rules.Engine(compiled_ruleset)
    filtered_only = 0
    for record in oracle_records:
        event = copy.deepcopy(record["event"])
        det = engine.match(event)
        if det is not None and det.filtered and not det.signatures:
            filtered_only += 1
            assert event == record["event"]
    assert filtered_only == 456  # oracle README: 456 ProcessCreate-only events


def _oracle_order(oracle_records: list[dict]) -> dict[tuple[str, str, int], int]:
    order = {}
    for i, record in enumerate(oracle_records):
        system = record["event"]["Event"]["System"]
        order[(record["corpus_path"], system["Channel"], int(system["EventRecordID"]))] = i
    return order


def test_evtx_rendering_equals_golang_evtx(oracle_records: list[dict]) -> None:
    """Every corpus EVTX record, read by rules.evtx, equals golang-evtx's JSON rendering."""
    from rules.evtx import EvtxStats, read_evtx

    expected = {}
    for record in oracle_records:
        system = record["event"]["Event"]["System"]
        expected[(record["corpus_path"], system["Channel"], system["EventRecordID"])] = record[
            "event"
        ]
    stats = EvtxStats()
    seen = 0
    for corpus_path in sorted({k[0] for k in expected}):
        for event in read_evtx(GENE_RULES.parent / corpus_path, stats):
            system = event["Event"]["System"]
            assert event == expected[(corpus_path, system["Channel"], system["EventRecordID"])]
            seen += 1
    assert seen == stats.records == 5371
    assert stats.errors == 0


def test_evtx_parity_with_and_without_containers(
    compiled_ruleset: rules.RuleSet,
    oracle_records: list[dict],
    oracle_containers: dict[str, list[str]],
) -> None:
    from rules.evtx import read_evtx

    order = _oracle_order(oracle_records)
    files = sorted({k[0] for k in order})
    events = [(f, e) for f in files for e in read_evtx(GENE_RULES.parent / f)]
    for containers, name in (
        (None, "gene-detections-corpus.jsonl"),
        (oracle_containers, "gene-detections-corpus-containers.jsonl"),
    ):
        engine = rules.Engine(compiled_ruleset, containers=containers)
        got = detections_of(engine, [(f, copy.deepcopy(e)) for f, e in events])
        got.sort(key=lambda g: order[g[:3]])
        assert got == oracle_expected(name)


def test_evtx_quick_key_agrees_with_the_engine_on_every_corpus_record(
    oracle_records: list[dict],
) -> None:
    """The scanner skips rendering records by (channel, EventID) read from the raw record."""
    import evtx
    import orjson

    from rules.engine import _system
    from rules.event import parse_event_id
    from rules.evtx import normalize_record, quick_key

    checked = 0
    for corpus_path in sorted({r["corpus_path"] for r in oracle_records}):
        for record in evtx.PyEvtxParser(
            str(GENE_RULES.parent / corpus_path), number_of_threads=1
        ).records_json():
            raw = orjson.loads(record["data"])
            key = quick_key(raw)
            if key is None:
                continue
            system = _system(normalize_record(raw))
            assert system is not None
            raw_id = system[1]
            assert key == (system[0], parse_event_id(raw_id))
            checked += 1
    assert checked == 5371


def test_evtx_scan_through_the_cli_gives_the_oracle_totals(capsys: pytest.CaptureFixture) -> None:
    from rules.cli import main

    evtx_root = str(GENE_RULES.parent / "EVTX-ATTACK-SAMPLES")
    compiled = str(GENE_RULES / "compiled.gen")
    assert main(["scan", "-r", compiled, "--format", "summary", evtx_root]) == 0
    out = capsys.readouterr()[0]
    assert "Events scanned: 5371" in out and "Positives:      1046" in out
    assert "Filtered only:  456" in out and "Parse errors:   0" in out
