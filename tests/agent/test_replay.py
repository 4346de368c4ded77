"""Replay: pacing, file formats, and detection parity with scanning by the rules engine."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

import rules
from agent.service import build_agent
from agent.sinks import MemorySink
from agent.sources.replay import ReplaySource, event_epoch, iter_file
from tests.agent.conftest import SHARED, needs_shared

ORACLE_EVENTS = SHARED / "gene-oracle" / "corpus-events.jsonl.gz"
COMPILED = SHARED / "corpus" / "gene-rules" / "compiled.gen"
EVTX_DIR = SHARED / "corpus" / "EVTX-ATTACK-SAMPLES"


def ev(ts: str, n: int) -> dict[str, Any]:
    return {
        "Event": {
            "System": {
                "Channel": "c",
                "EventID": 1,
                "EventRecordID": str(n),
                "TimeCreated": {"SystemTime": ts},
            },
            "EventData": {},
        }
    }


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(round(s, 6))
        self.now += s


def _write_jsonl(path: Path, events: list[dict[str, Any]], wrap: bool = False) -> None:
    lines = [json.dumps({"file": "x", "event": e} if wrap else e) for e in events]
    path.write_text("\n".join(lines + ["", "not json"]) + "\n")


def test_event_epoch_parses_rfc3339_variants() -> None:
    assert event_epoch(ev("1970-01-01T00:00:01.5Z", 0)) == 1.5
    assert event_epoch(ev("1970-01-01T01:00:00.123456789+01:00", 0)) == pytest.approx(0.123456789)
    assert event_epoch(ev("garbage", 0)) is None
    assert event_epoch({"Event": {}}) is None


def test_recorded_and_accelerated_pace(tmp_path: Path) -> None:
    events = [
        ev("2020-01-01T00:00:00Z", 1),
        ev("2020-01-01T00:00:01Z", 2),
        ev("2020-01-01T00:00:03Z", 3),
    ]
    _write_jsonl(tmp_path / "a.jsonl", events, wrap=True)
    for speed, expected in ((1.0, [1.0, 2.0]), (4.0, [0.25, 0.5])):
        t = FakeTime()
        src = ReplaySource([tmp_path / "a.jsonl"], speed=speed, clock=t.clock, sleep=t.sleep)
        got = list(src.events())
        assert [g["Event"]["System"]["EventRecordID"] for g in got] == ["1", "2", "3"]
        assert t.sleeps == expected


def test_fixed_rate_and_loop(tmp_path: Path) -> None:
    _write_jsonl(tmp_path / "b.jsonl", [ev("2020-01-01T00:00:00Z", i) for i in range(4)])
    t = FakeTime()
    src = ReplaySource([tmp_path / "b.jsonl"], rate=10, loop=True, clock=t.clock, sleep=t.sleep)
    it = src.events()
    got = [next(it) for _ in range(10)]
    src.close()
    assert len(got) == 10 and t.now == pytest.approx(100.9)
    assert all(s == pytest.approx(0.1) for s in t.sleeps)


def test_directories_and_gzip(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with gzip.open(tmp_path / "d" / "c.jsonl.gz", "wt") as fh:
        fh.write(json.dumps(ev("2020-01-01T00:00:00Z", 9)) + "\n")
    (tmp_path / "d" / "ignored.txt").write_text("x")
    src = ReplaySource([tmp_path / "d"])
    assert [e["Event"]["System"]["EventRecordID"] for e in src.events()] == ["9"]


def _key(e: dict[str, Any]) -> tuple[str, str, str]:
    s = e["Event"]["System"]
    return (s.get("Computer", ""), str(s.get("Channel")), str(s.get("EventRecordID")))


def _replay_detections(paths: list[Path], tmp_path: Path) -> dict[tuple[str, str, str], Any]:
    from tests.agent.conftest import make_config

    config = make_config(
        tmp_path,
        general={"criticality_threshold": 0, "enable_filters": False},
        rules={"paths": [str(COMPILED)]},
        alert_log={"enable": False},
    )
    sink = MemorySink()
    agent = build_agent(config, sources=[ReplaySource(paths)], sinks=[sink])
    agent.run(until_sources_done=True)
    assert agent.counters.sources["replay"].drops == 0
    out: dict[tuple[str, str, str], Any] = {}
    for e in sink.events:
        d = e["Event"]["Detection"]
        # the stored detection carries the matched rules' ATT&CK (WHIDS had it off)
        out.setdefault(_key(e), []).append(
            (tuple(d["Signature"]), d["Criticality"], tuple(a["ID"] for a in d.get("ATTACK", [])))
        )
    return out


def _scan_detections(events: list[dict[str, Any]]) -> dict[tuple[str, str, str], Any]:
    engine = rules.Engine(rules.load([COMPILED]))
    out: dict[tuple[str, str, str], Any] = {}
    for e in events:
        det = engine.match(e)
        if det is not None and det.signatures:
            out.setdefault(_key(e), []).append(
                (det.signatures, det.criticality, tuple(a["ID"] for a in det.attack))
            )
    return out


@needs_shared
def test_jsonl_corpus_replay_matches_engine_scan_and_gene_oracle(tmp_path: Path) -> None:
    replayed = _replay_detections([ORACLE_EVENTS], tmp_path)
    scanned = _scan_detections(list(iter_file(ORACLE_EVENTS)))
    assert replayed == scanned
    oracle = [
        json.loads(line)
        for line in (SHARED / "gene-oracle" / "gene-detections-corpus.jsonl")
        .read_text()
        .splitlines()
    ]
    assert sum(len(v) for v in replayed.values()) == len(oracle) == 1046
    assert sum(1 for v in replayed.values() for d in v if d[2]) >= 137  # with ATT&CK


@needs_shared
def test_evtx_corpus_replay_matches_engine_scan(tmp_path: Path) -> None:
    evtx = pytest.importorskip("rules.evtx")
    files = sorted(EVTX_DIR.rglob("*.evtx"))
    assert len(files) == 177
    replayed = _replay_detections(files, tmp_path)
    scanned = _scan_detections([e for f in files for e in evtx.read_evtx(f)])
    assert replayed == scanned
    assert sum(len(v) for v in replayed.values()) >= 1000


def test_every_input_format_replays_and_others_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The readers of `heron scan` (rules.inputs): flattened JSON, Sysmon for Linux, audit.log."""
    data = Path(__file__).resolve().parents[1] / "rules" / "inputs" / "data"
    (tmp_path / "odd.jsonl").write_text('{"odd": 1}\n{"Event": {"System": {}}}\n')
    src = ReplaySource(
        [
            data / "mordor_flat.json",
            data / "sysmon_linux.syslog",
            data / "audit.log",
            tmp_path / "odd.jsonl",
        ]
    )
    channels = [e["Event"]["System"].get("Channel") for e in src.events()]
    assert channels == ["Microsoft-Windows-Sysmon/Operational"] * 2 + ["Security"] + [
        "Linux-Sysmon/Operational"
    ] * 2 + ["Linux-Audit"] * 7 + [None]
    assert "odd.jsonl: 2 events in no known shape, 1 of them not replayed" in caplog.text
