"""Retro-hunt: the engine over ``iter_events`` finds what it finds over the raw events."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import rules
from index import EndpointRef, EventStore
from rules.event import event_hash


@pytest.fixture(scope="module")
def engine(shared_dir: Path) -> rules.Engine:
    path = shared_dir / "corpus" / "gene-rules" / "compiled.gen"
    if not path.exists():
        pytest.skip("gene-rules not present")
    return rules.Engine(rules.load([path], skip_disabled=True))


def _hits(engine: rules.Engine, events: list[dict[str, Any]]) -> Counter[tuple[str, tuple]]:
    found: Counter[tuple[str, tuple]] = Counter()
    for event in events:
        engine.match(event)
        detection = event["Event"].get("Detection")
        if detection and detection.get("Signature"):
            found[(event_hash(event), tuple(sorted(detection["Signature"])))] += 1
    return found


def test_retro_hunt_matches_scan_and_is_stored_as_retro(
    engine: rules.Engine,
    corpus: list[tuple[str, dict[str, Any]]],
    corpus_store: EventStore,
    tmp_path: Path,
) -> None:
    scanned = _hits(engine, [copy.deepcopy(e) for _, e in corpus])
    assert scanned, "the rules should detect something in the corpus"
    stored = list(corpus_store.iter_events())
    assert len(stored) == len(corpus)
    hunted = _hits(engine, stored)
    assert hunted == scanned

    with EventStore(tmp_path / "retro", fsync=False) as store:
        hits = [e for e in stored if e["Event"].get("Detection")]
        by_endpoint: dict[str, list[dict[str, Any]]] = {}
        for event in hits:
            by_endpoint.setdefault(event["Event"]["EdrData"]["Endpoint"]["UUID"], []).append(event)
        for uuid, events in by_endpoint.items():
            store.append_detections(events, endpoint=EndpointRef(uuid), batch_id=f"hunt-1/{uuid}")
        store.flush()
        assert store.search("retro:true").total == sum(scanned.values())
        assert store.search(detections_only=True).total == sum(scanned.values())
        signature = next(iter(scanned))[1][0]
        expected = sum(n for (_, sigs), n in scanned.items() if signature in sigs)
        assert store.search(f'Signature:"{signature}"').total == expected
