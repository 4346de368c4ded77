"""Cluster mode: a front-end that does not lead the MISP jobs neither pulls nor scans."""

from __future__ import annotations

from tests.fakemisp import FakeMisp

from .conftest import MakeSync


def test_follower_does_not_pull_until_it_leads(fake: FakeMisp, make_sync: MakeSync) -> None:
    sync = make_sync()
    leading = {"misp.pull": False}
    sync.leads = lambda job: leading.get(job, False)
    sync.run_pending()
    assert fake.requests == [] and sync.status()["pull"]["runs"] == 0
    leading["misp.pull"] = True
    sync.run_pending()
    assert sync.status()["pull"]["runs"] == 1
