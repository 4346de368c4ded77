"""Endpoint scores merged from several front-ends equal the scores of one reducer that saw
every detection (cluster mode's SharedReducer, here over one embedded store)."""

from __future__ import annotations

import random

from appliance.services.scoring import Reducer, SharedReducer
from appliance.store import Store

SIGS = ["SigA", "SigB", "SigC", "SigD"]
TACTICS = ["execution", "persistence", "discovery"]


def _detections(n: int) -> list[tuple[str, float, list[str], int, list[dict[str, str]]]]:
    rnd = random.Random(23)
    return [
        (
            rnd.choice(["ep-1", "ep-2", "ep-3"]),
            1_000.0 + rnd.random() * 5_000,
            rnd.sample(SIGS, rnd.randint(1, 2)),
            rnd.randint(0, 12),  # capped at 10; 0 is left out of the criticalities
            [{"ID": f"T10{rnd.randint(50, 59)}", "Tactic": rnd.choice(TACTICS)}],
        )
        for _ in range(n)
    ]


def test_front_ends_merge_into_the_same_reports_as_one_reducer() -> None:
    detections = _detections(600)
    one = Reducer()
    for uuid, ts, sigs, crit, attack in detections:
        one.update(uuid, ts, sigs, crit, attack)
    with Store(":memory:") as store:
        fronts = [SharedReducer(store.reports, store.changes) for _ in range(3)]
        for i, (uuid, ts, sigs, crit, attack) in enumerate(detections):
            front = fronts[i % 3]  # the agents' batches reach the front-ends in turn
            front.update(uuid, ts, sigs, crit, attack)
            if i % 7 == 0:
                for ep in ("ep-1", "ep-2", "ep-3"):
                    front.commit(ep, store.reports, 2_000.0)
        for front in fronts:
            for ep in ("ep-1", "ep-2", "ep-3"):
                front.commit(ep, store.reports, 2_000.0)
        store.changes.announce("reports")  # what PostgreSQL's NOTIFY does in cluster mode
        for front in fronts:
            assert front.reports() == one.reports()
        # A reset on one front-end is the whole endpoint's report, and gone everywhere.
        taken = fronts[1].reset("ep-2")
        assert taken == one.reset("ep-2")
        store.changes.announce("reports")
        assert fronts[0].report("ep-2") is None and fronts[2].report("ep-2") is None
        assert fronts[0].report("ep-1") == one.report("ep-1")
