"""Every event shape through the whole path: agent → ingest → index → search, SQL, retro-hunt.

Hypothesis generates events in every rendering shape (tests/shapes.py); each batch goes through
the agent pipeline (log_all), then the manager's /logs (real event store: journal, Tantivy,
DuckDB), then search, SQL, streams and retro-hunt. Nothing may raise, nothing may be dropped.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.service import build_agent
from agent.sinks import MemorySink
from appliance.misp.iocs import IocIndex
from appliance.misp.mapping import event_values
from appliance.misp.sightings import _event_time
from appliance.runtime.context import build_context
from appliance.security.pki import Pki
from appliance.services.streams import StreamFilter
from appliance.store import Store
from rules import wire
from tests.agent.conftest import gene_rule, make_config
from tests.appliance.conftest import Clock, Env
from tests.shapes import SYSMON, events

RULES = [
    json.loads(gene_rule("AnyImage", ["$i: Image ~= '.'"], "$i", events={SYSMON: [1]})),
    json.loads(
        gene_rule("ProcessCreate", ["$i: Image ~= '.'"], "$i", events={SYSMON: [1]}, filter_=True)
    ),
]
IOCS = [
    wire.Ioc(v, t, f"u{n}", "g", "test")
    for n, (t, v) in enumerate(
        [
            ("md5", "0" * 32),
            ("sha256", "a" * 64),
            ("domain", "evil.test"),
            ("ip-dst", "10.9.9.9"),
            ("ip-src", "10.9.9.8"),
            ("filename", "x.exe"),
            ("regkey", "HKLM\\Software\\x"),
            ("named-pipe", "\\evil"),
            ("hostname", "evil.test"),
        ]
    )
]
QUERIES = [
    "",
    "Image:*a*",
    'Image:"a b"',
    "EventID:1",
    "detection:true",
    "Channel:x",
    'TargetFilename:"C:\\\\x (y)"',
    "a",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, MemorySink, Env]]:
    from index import EventStore

    tmp = tmp_path_factory.mktemp("shapes")
    Pki.create(tmp / "pki", server_names=["localhost"])
    clock = Clock()
    ctx = build_context(
        data_dir=tmp,
        store=Store(":memory:"),
        pki=Pki(tmp / "pki", clock=clock),
        clock=clock,
        events=EventStore(tmp / "events", commit_interval=0.2),
    )
    env = Env(ctx)
    for flt in (
        StreamFilter(),
        StreamFilter(detections_only=True, min_criticality=3),
        StreamFilter(channel="x", event_id=1, signature="AnyImage"),
    ):
        ctx.hub.subscribe(flt)  # streams filter every stored event
    sink = MemorySink()
    agent = build_agent(
        make_config(tmp / "agent", general={"log_all": True}, actions={"allowed": []}),
        sources=[],
        sinks=[sink],
    )
    agent.reload_rules("\n".join(json.dumps(r) for r in RULES))
    agent.detector.set_iocs([i.to_dict() for i in IOCS])  # IoC matching sees every shape too
    yield agent, sink, env
    agent.close()
    ctx.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(batch=st.lists(events(), min_size=1, max_size=8), live=st.booleans())
def test_no_shape_raises_or_is_dropped(
    world: tuple[Any, MemorySink, Env], batch: list[dict[str, Any]], live: bool
) -> None:
    agent, sink, env = world
    sink.events.clear()
    for event in batch:
        assert agent.process(copy.deepcopy(event), live=live) is True
    forwarded = list(sink.events)
    assert len(forwarded) == len(batch) and agent.counters.pipeline_errors == 0
    endpoint = env.enroll(hostname="shapes")  # one endpoint per example: counts stay exact
    res = env.post_logs(endpoint, forwarded)
    assert res.status_code == 200, res.text
    env.ctx.events.flush()
    rows = env.a(
        "POST",
        "/hunt/sql",
        json={"query": f"SELECT count(*) FROM events WHERE endpoint = '{endpoint.uuid}'"},
    )
    assert rows.status_code == 200 and rows.json["data"]["rows"] == [[len(batch)]], rows.text
    page = env.a("GET", f"/search?endpoint={endpoint.uuid}&limit=100")
    assert page.status_code == 200 and page.json["data"]["total"] == len(batch)
    misp = IocIndex((ioc, ioc.value) for ioc in IOCS)
    for stored in page.json["data"]["events"]:  # what the MISP sighting listener reads
        list(event_values(stored))
        misp.match(stored)
        _event_time(stored, 0.0)
    for query in QUERIES:
        res = env.a("GET", "/search", params={"q": query, "endpoint": endpoint.uuid})
        assert res.status_code == 200, (query, res.text)
    hunt = env.a("POST", "/hunt/rules", json={"rules": RULES, "endpoint": endpoint.uuid})
    assert hunt.status_code == 200, hunt.text
    assert hunt.json["data"]["scanned"] == len(batch)
    logs = env.a("GET", f"/endpoints/{endpoint.uuid}/logs?limit=100")
    assert logs.status_code == 200, logs.text
    assert env.ctx.metrics.value("heron_fanout_errors_total") == 0
