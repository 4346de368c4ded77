"""Detection overview (charts data) over the real fleet store's `detections` table."""

from __future__ import annotations

from collections.abc import Iterator

import falcon
import falcon.testing
import pytest

from appliance.console import (
    Console,
    ConsoleAuth,
    DetectionOverview,
    SessionStore,
    add_console_routes,
)
from appliance.core.errors import ApplianceError
from appliance.store import Store

from .conftest import ADMIN_KEY, AuthMiddleware, Clock, _render, authenticate

NOW = 1_700_000_000.0


@pytest.fixture
def store() -> Iterator[Store]:
    with Store(":memory:") as s:
        rows = [
            ("ep-a", NOW - 60, NOW - 59, "h1", ["Mimikatz"], 10, None),
            ("ep-a", NOW - 120, NOW - 119, "h2", ["Mimikatz", "LsassAccess"], 9, None),
            ("ep-b", NOW - 3 * 3600, NOW - 3 * 3600, "h3", ["LsassAccess"], 7, None),
            ("ep-b", NOW - 23.5 * 3600, NOW - 23.5 * 3600, "h4", ["PowershellEncoded"], 5, None),
            ("ep-c", NOW - 30 * 3600, NOW - 30 * 3600, "h5", ["TooOld"], 3, None),  # outside 24 h
        ]
        s.detections.add_many(rows)
        s.db.write(lambda cur: None)  # barrier: the writer thread has applied the batch
        yield s


def test_summary_counts_per_bucket_rule_and_endpoint(store: Store) -> None:
    overview = DetectionOverview(store.db.query, clock=lambda: NOW)
    data = overview.summary(hours=24, buckets=24)
    assert data["total"] == 4
    counts = [b["count"] for b in data["buckets"]]
    assert len(counts) == 24 and counts[-1] == 2 and counts[21] == 1 and counts[0] == 1
    assert {r["name"]: r["hits"] for r in data["rules"]} == {
        "Mimikatz": 2,
        "LsassAccess": 2,
        "PowershellEncoded": 1,
    }
    assert data["rules"][-1]["name"] == "PowershellEncoded"  # most hits first
    assert data["endpoints"][0] == {"uuid": "ep-a", "detections": 2, "max_criticality": 10}
    assert data["endpoints"][1] == {"uuid": "ep-b", "detections": 2, "max_criticality": 7}


def test_overview_route_needs_auth_and_validates_params(store: Store) -> None:
    auth = ConsoleAuth(authenticate, SessionStore(clock=Clock()))
    console = Console(auth=auth, overview=DetectionOverview(store.db.query, clock=lambda: NOW))
    app = falcon.App(middleware=[AuthMiddleware(auth)])
    app.add_error_handler(ApplianceError, _render)
    add_console_routes(app, console)
    client = falcon.testing.TestClient(app)
    assert client.simulate_get("/console/api/overview").status_code == 401
    ok = client.simulate_get(
        "/console/api/overview",
        params={"hours": "48", "buckets": "4"},
        headers={"X-Api-Key": ADMIN_KEY},
    )
    assert ok.status_code == 200 and ok.json["data"]["total"] == 5
    assert len(ok.json["data"]["buckets"]) == 4
    for bad in ({"hours": "nan"}, {"hours": "-1"}, {"buckets": "100000"}, {"top": "x"}):
        result = client.simulate_get(
            "/console/api/overview", params=bad, headers={"X-Api-Key": ADMIN_KEY}
        )
        assert result.status_code == 400, bad
