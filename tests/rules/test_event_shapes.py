"""`heron scan` and the event model accept every event shape (tests/shapes.py) without raising.

The gene-rules `compiled.gen` (Filter rule included) runs over events with empty elements,
#attributes/#text forms, lists, numbers and odd System blocks; every output format renders
each event, and the event model's accessors answer for each.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rules
from rules.event import Event, event_hash, event_time
from rules.scan import (
    RENDERERS,
    ScanOptions,
    ScanStats,
    build_engine,
    iter_json_stream,
    scan_events,
)
from tests.shapes import events

from .conftest import GENE_RULES

COMPILED = GENE_RULES / "compiled.gen"


@pytest.fixture(scope="module")
def engine() -> rules.Engine:
    if not COMPILED.exists():
        pytest.skip("../shared gene-rules not present")
    return build_engine(ScanOptions(rules=(str(COMPILED),)))[0]


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(events(), min_size=1, max_size=10))
def test_scan_takes_every_shape(engine: rules.Engine, batch: list[dict[str, Any]]) -> None:
    # Through the JSON reader as `heron scan` reads a file, every event printed (--all).
    stream = io.BytesIO(b"".join(orjson.dumps(e) + b"\n" for e in batch))
    stats = ScanStats()
    decoded = list(iter_json_stream(stream, stats, "<shapes>"))
    assert decoded == batch and stats.parse_errors == 0
    printed: list[Any] = []
    scan_events(
        engine,
        copy.deepcopy(decoded),
        ScanOptions(rules=(), all=True),
        stats,
        lambda ev, det: printed.append((ev, det)),
    )
    assert stats.events == len(batch) and len(printed) == len(batch)
    for ev, det in printed:
        for render in RENDERERS.values():
            assert isinstance(render(ev, det), bytes)
        model = Event(ev)
        assert isinstance(model.channel, str) and isinstance(model.event_id, int)
        assert isinstance(model.computer, str) and len(event_hash(ev)) == 40
        event_time(ev)


def test_empty_channel_event_is_scanned(engine: rules.Engine, tmp_path: Path) -> None:
    ev = {
        "Event": {
            "System": {
                "Channel": {},
                "EventID": "5",
                "Computer": "W",
                "TimeCreated": {"SystemTime": "2019-05-20T18:37:04.3262466Z"},
            },
            "EventData": {"Endpoint": "lsarpc"},
        }
    }
    assert engine.match(copy.deepcopy(ev)) is None
    assert RENDERERS["table"](ev, None).split()[2] == b"map[]"  # Gene's %v of an empty map
