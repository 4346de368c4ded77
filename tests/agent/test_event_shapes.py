"""Every event shape goes through the agent pipeline: none crashes a hook, none is lost.

Issue 25: ETW traces converted to EVTX have an empty ``<Channel/>`` (``{}``); the tracking hooks
raised ``TypeError: unhashable type: 'dict'`` and 14 % of a replay never reached the manager.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from agent.service import build_agent
from agent.sinks import MemorySink
from agent.sources import MemorySource
from tests.agent.conftest import gene_rule
from tests.shapes import SYSMON, events

RULES = "\n".join(
    [
        gene_rule("AnyImage", ["$i: Image ~= '.'"], "$i", events={SYSMON: [1]}, criticality=3),
        gene_rule("ProcessCreate", ["$i: Image ~= '.'"], "$i", events={SYSMON: [1]}, filter_=True),
    ]
)
RPC_EVENT = {
    "Event": {  # as golang-evtx renders an RPC ETW capture converted to EVTX
        "EventData": {
            "Endpoint": "lsarpc",
            "InterfaceUuid": "12345778-1234-ABCD-EF00-0123456789AB",
            "ProcNum": "57",
        },
        "System": {
            "Channel": {},
            "Computer": "WIN10",
            "Correlation": {},
            "EventID": "5",
            "EventRecordID": "12",
            "Execution": {"ProcessID": "1000", "ThreadID": "1004"},
            "Keywords": "0x0",
            "Level": "4",
            "Opcode": "1",
            "Provider": {
                "Guid": "6AD52B32-D609-4BE9-AE07-CE8DAE937E39",
                "Name": "Microsoft-Windows-RPC",
            },
            "Security": {},
            "Task": "1",
            "TimeCreated": {"SystemTime": "2019-05-20T18:37:04.3262466Z"},
            "Version": "0",
        },
    }
}


@pytest.fixture
def agent(config_factory: Any) -> Iterator[tuple[Any, MemorySink]]:
    sink = MemorySink()
    agent = build_agent(
        config_factory(general={"log_all": True, "ignore_self": False}, actions={"allowed": []}),
        sources=[],
        sinks=[sink],
    )
    agent.reload_rules(RULES)
    yield agent, sink
    agent.close()


@pytest.mark.parametrize("live", [False, True])
def test_empty_channel_is_processed_and_forwarded(
    agent: tuple[Any, MemorySink], live: bool
) -> None:
    a, sink = agent
    assert a.process(copy.deepcopy(RPC_EVENT), live=live) is True
    assert list(sink.events) == [RPC_EVENT]
    assert a.counters.pipeline_errors == 0 and a.counters.processed == 1


def test_replay_with_odd_shapes_loses_nothing(config_factory: Any) -> None:
    odd = [copy.deepcopy(RPC_EVENT) for _ in range(5)]
    odd[1]["Event"]["System"] = "not a block"
    odd[2]["Event"]["System"]["EventID"] = {}
    odd[3]["Event"]["EventData"] = ["unnamed", None]
    del odd[4]["Event"]["System"]
    sink = MemorySink()
    agent = build_agent(
        config_factory(general={"log_all": True}, actions={"allowed": []}),
        sources=[MemorySource(odd, name="replay")],
        sinks=[sink],
    )
    try:
        agent.start()
        assert agent.wait_idle(timeout=120.0)
        assert len(sink.events) == len(odd)
        assert agent.counters.pipeline_errors == 0
    finally:
        agent.close()


def test_an_event_the_pipeline_fails_on_is_counted_and_forwarded_raw(config_factory: Any) -> None:
    sink = MemorySink()
    agent = build_agent(
        config_factory(general={"log_all": False}, actions={"allowed": []}),
        sources=[MemorySource([copy.deepcopy(RPC_EVENT), {"no": "Event"}], name="replay")],
        sinks=[sink],
    )

    def broken(event: dict[str, Any]) -> Any:
        raise RuntimeError("engine bug")

    agent.detector.match = broken  # a defect anywhere in processing
    try:
        agent.start()
        assert agent.wait_idle(timeout=120.0)
        assert list(sink.events) == [RPC_EVENT]
        status = agent.counters.snapshot()
        assert status["unprocessable"] == 2 and status["pipeline_errors"] == 1
        assert status["forwarded"] == 1
    finally:
        agent.close()


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(event=events())
def test_any_shape_is_forwarded(agent: tuple[Any, MemorySink], event: dict[str, Any]) -> None:
    a, sink = agent
    before = len(sink.events)
    for live in (False, True):
        assert a.process(copy.deepcopy(event), live=live) is True
    assert len(sink.events) == before + 2
    assert a.counters.pipeline_errors == 0
