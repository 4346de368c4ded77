"""One leader per cluster-wide job (MISP pull, artifact scan) by PostgreSQL advisory lock:
exactly one front-end leads; when it stops or is killed (-9), another takes over."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from appliance.misp.shared import JOB_PULL, JOB_REPORTS, LEADER_JOBS
from appliance.runtime.leader import APP_NAME, PgLeadership, SoleLeader, lock_key
from tests.cluster.servers import Postgres
from tests.e2e.harness import wait_for


@pytest.fixture
def pair(pg_server: Postgres) -> Iterator[tuple[PgLeadership, PgLeadership]]:
    a = PgLeadership(pg_server.dsn, LEADER_JOBS, interval=0.2)
    b = PgLeadership(pg_server.dsn, LEADER_JOBS, interval=0.2)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_exactly_one_front_end_leads_each_job_then_hands_over(
    pair: tuple[PgLeadership, PgLeadership],
) -> None:
    a, b = pair
    a.start()
    b.start()
    assert a.leads(JOB_PULL) and a.leads(JOB_REPORTS)
    assert not b.leads(JOB_PULL) and not b.leads(JOB_REPORTS)
    a.stop()  # a manager shutting down gives its jobs up
    assert not a.leads(JOB_PULL)
    wait_for(lambda: b.leads(JOB_PULL) and b.leads(JOB_REPORTS), 30, "b to take over")


def test_a_killed_leader_loses_its_jobs(pg_server: Postgres) -> None:
    code = (
        "import psycopg, sys, time\n"
        f"c = psycopg.connect({pg_server.dsn!r}, autocommit=True)\n"
        f"c.execute('SELECT pg_advisory_lock(%s)', [{lock_key(JOB_PULL)}])\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    follower = PgLeadership(pg_server.dsn, [JOB_PULL], interval=0.2)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        follower.start()
        assert not follower.leads(JOB_PULL)
        child.kill()  # SIGKILL: no goodbye to PostgreSQL; the closed socket ends the session
        child.wait(30)
        wait_for(lambda: follower.leads(JOB_PULL), 30, "the follower to lead")
    finally:
        child.kill()
        follower.stop()


def test_losing_the_session_stops_leading_at_once(pg_server: Postgres) -> None:
    import psycopg

    leader = PgLeadership(pg_server.dsn, [JOB_PULL], interval=60)
    try:
        assert leader.try_once() == {JOB_PULL}
        with psycopg.connect(pg_server.dsn, autocommit=True) as admin:  # as a network cut would
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                [APP_NAME],
            )
        assert leader.try_once() == frozenset() and not leader.leads(JOB_PULL)
        assert leader.try_once() == {JOB_PULL}  # a new session; the lock was released
    finally:
        leader.stop()


def test_embedded_mode_leads_everything() -> None:
    assert all(SoleLeader().leads(job) for job in LEADER_JOBS)
