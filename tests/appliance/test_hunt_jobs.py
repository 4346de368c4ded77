"""Retro-hunt jobs (issue 18): progress, cursor paging, cancel, time limit, per-user queue,
match byte cap, and ingest not held up by a long hunt (real event store, in-process apps)."""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from appliance.services.hunting import Hunting
from appliance.services.huntjobs import HuntJobs, HuntLimits
from tests.appliance.conftest import Env, event

RULE = {
    "Name": "Cmd",
    "Meta": {
        "Events": {"Microsoft-Windows-Sysmon/Operational": [1]},
        "Criticality": 5,
        "Schema": "2.0.0",
    },
    "Matches": ["$m: Image ~= 'cmd\\d*5\\.exe$'"],
    "Condition": "$m",
}
LIMIT = 120.0  # s: generous bound on waits for a condition (a busy CI box)


def _wait(pred: Any, what: str) -> Any:
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _jobs(env: Env, **limits: Any) -> HuntJobs:
    """Replace the context's job runner with one using `limits`."""
    assert env.ctx.hunts is not None
    env.ctx.hunts.close()
    hunting = Hunting(env.ctx.events)
    env.ctx.hunts = HuntJobs(
        hunting,
        HuntLimits(**limits),
        store=lambda job: hunting.store_matches(job.id, job.matches),
    )
    return env.ctx.hunts


def _fill(env: Env, n: int, batch: int = 500) -> None:
    agent = env.enroll()
    for lo in range(0, n, batch):
        res = env.post_logs(agent, [event(i) for i in range(lo, min(n, lo + batch))])
        assert res.status_code == 200, res.text
    env.ctx.events.flush()  # type: ignore[attr-defined]


def _job(env: Env, job_id: str, key: str | None = None) -> dict[str, Any]:
    res = env.a("GET", f"/hunt/jobs/{job_id}", key=key)
    assert res.status_code == 200, res.text
    return dict(res.json["data"])


def _ended(env: Env, job_id: str) -> dict[str, Any]:
    return dict(
        _wait(
            lambda: (
                (j := _job(env, job_id))["state"] in ("done", "cancelled", "timeout", "failed")
                and j
            ),
            "the job to end",
        )
    )


def test_job_progress_and_cursor_paging_match_the_synchronous_hunt(env: Env) -> None:
    _fill(env, 100)
    res = env.a("POST", "/hunt/jobs", key=env.analyst_key, json={"rules": [RULE]})
    assert res.status_code == 202, res.text
    job = res.json["data"]
    assert job["state"] in ("queued", "running", "done") and job["owner"]
    done = _ended(env, job["id"])
    assert done["state"] == "done" and done["total"] == 100 and done["scanned"] == 100
    assert done["detections"] == 10 and done["matches"] == 10 and done["rules"] == 1
    got, cursor = [], "0"
    while cursor is not None:
        page = env.a("GET", f"/hunt/jobs/{job['id']}/matches?cursor={cursor}&limit=3").json["data"]
        assert len(page["events"]) <= 3
        got += page["events"]
        cursor = page["next_cursor"]
    sync = env.a("POST", "/hunt/rules", json={"rules": [RULE]}).json["data"]
    assert sync["stopped"] == "" and sync["scanned"] == 100 and sync["detections"] == 10
    key = [m["Event"]["EventData"]["CommandLine"] for m in got]
    assert key == [m["Event"]["EventData"]["CommandLine"] for m in sync["matches"]]
    assert [j["id"] for j in env.a("GET", "/hunt/jobs").json["data"]][:2] == [
        sync["hunt_id"],
        job["id"],
    ]
    # Users see their own jobs; admins every job.
    mine = env.a("GET", "/hunt/jobs", key=env.analyst_key).json["data"]
    assert [j["id"] for j in mine] == [job["id"]]
    assert env.a("GET", f"/hunt/jobs/{sync['hunt_id']}", key=env.analyst_key).status_code == 404
    bad = env.a("GET", f"/hunt/jobs/{job['id']}/matches?cursor=x")
    assert bad.status_code in (400, 422)


def test_cancel_a_running_job_keeps_its_results_so_far(env: Env) -> None:
    _fill(env, 3000)
    _jobs(env, cpu_share=0.05)  # slow: idles 19x the CPU time it used per chunk
    job = env.a("POST", "/hunt/jobs", json={"rules": [RULE]}).json["data"]
    _wait(lambda: _job(env, job["id"])["scanned"] >= 256, "the first chunk")
    res = env.a("DELETE", f"/hunt/jobs/{job['id']}")
    assert res.status_code == 200, res.text
    done = _ended(env, job["id"])
    assert done["state"] == "cancelled" and 0 < done["scanned"] < 3000 and done["truncated"]
    page = env.a("GET", f"/hunt/jobs/{job['id']}/matches").json["data"]
    assert page["next_cursor"] is None and len(page["events"]) == done["matches"]
    again = env.a("DELETE", f"/hunt/jobs/{job['id']}")
    assert again.status_code in (400, 422) and "cancelled" in again.json["error"]


def test_time_limit_and_per_user_queue(env: Env) -> None:
    _fill(env, 3000)
    _jobs(env, cpu_share=0.05, queue_per_user=1, workers=1)
    running = env.a("POST", "/hunt/jobs", json={"rules": [RULE]}).json["data"]
    _wait(lambda: _job(env, running["id"])["state"] == "running", "the job to start")
    queued = env.a("POST", "/hunt/jobs", json={"rules": [RULE]})
    assert queued.status_code == 202
    refused = env.a("POST", "/hunt/jobs", json={"rules": [RULE]})
    assert refused.status_code == 429 and "hunt.queue_per_user" in refused.json["error"]
    other = env.a("POST", "/hunt/jobs", key=env.analyst_key, json={"rules": [RULE]})
    assert other.status_code == 202  # another user's queue
    # A queued job is cancelled at once, without running.
    cancelled = env.a("DELETE", f"/hunt/jobs/{queued.json['data']['id']}").json["data"]
    assert cancelled["state"] == "cancelled" and cancelled["scanned"] == 0
    for job_id in (running["id"], other.json["data"]["id"]):
        env.a("DELETE", f"/hunt/jobs/{job_id}")
    # hunt.timeout: the synchronous API answers with the results so far and why it stopped.
    _jobs(env, timeout=0.0)
    data = env.a("POST", "/hunt/rules", json={"rules": [RULE]}).json["data"]
    assert data["stopped"] == "timeout" and data["truncated"] and data["scanned"] == 0
    assert _job(env, data["hunt_id"])["state"] == "timeout"


def test_match_bytes_cap_and_bad_rules(env: Env) -> None:
    _fill(env, 100)
    one = len(
        __import__("orjson").dumps(
            env.a("POST", "/hunt/rules", json={"rules": [RULE], "limit": 1}).json["data"][
                "matches"
            ][0]
        )
    )
    _jobs(env, match_bytes=3 * one + 10)
    data = env.a("POST", "/hunt/rules", json={"rules": [RULE]}).json["data"]
    assert data["detections"] == 10 and len(data["matches"]) == 3 and data["truncated"]
    bad = env.a("POST", "/hunt/jobs", json={"rules": [dict(RULE, Condition="(")]})
    assert bad.status_code == 422  # compiled before a job is queued
    assert env.a("GET", "/hunt/jobs/00000000-0000-0000-0000-000000000000").status_code == 404


def test_ingest_is_not_held_up_by_a_long_hunt(env: Env) -> None:
    """/logs latency while a CPU-heavy job runs stays far below the agent's 30 s timeout."""
    _fill(env, 20_000, batch=2000)
    heavy = dict(RULE, Matches=[f"$m{i}: CommandLine ~= '(a|b|c)*{i}x$'" for i in range(40)])
    heavy["Condition"] = " or ".join(f"$m{i}" for i in range(40))
    job = env.a("POST", "/hunt/jobs", json={"rules": [heavy]}).json["data"]
    _wait(lambda: _job(env, job["id"])["scanned"] > 0, "the hunt to start")
    agent = env.enroll("ingest-while-hunting")
    latencies: list[float] = []
    stop = threading.Event()

    def post() -> None:
        n = 0
        while not stop.is_set() and len(latencies) < 40:
            t0 = time.perf_counter()
            res = env.post_logs(agent, [event(n + i) for i in range(200)])
            latencies.append(time.perf_counter() - t0)
            assert res.status_code == 200
            n += 200

    poster = threading.Thread(target=post)
    poster.start()
    _wait(
        lambda: len(latencies) >= 40 or _job(env, job["id"])["state"] != "running",
        "ingest batches",
    )
    stop.set()
    poster.join(LIMIT)
    running = _job(env, job["id"])
    env.a("DELETE", f"/hunt/jobs/{job['id']}")
    assert len(latencies) >= 5, (len(latencies), running)
    lat = sorted(latencies)
    p95 = lat[max(0, int(len(lat) * 0.95) - 1)]
    # The agent times out at 30 s; a generous bound for a loaded 2-core box.
    assert p95 < 10.0, (statistics.median(lat), p95, running)


def test_finished_jobs_are_dropped_past_their_byte_budget(env: Env) -> None:
    _fill(env, 100)
    first = env.a("POST", "/hunt/rules", json={"rules": [RULE]}).json["data"]
    assert env.ctx.hunts is not None
    size = env.ctx.hunts.get(first["hunt_id"]).result.match_bytes  # type: ignore[union-attr]
    _jobs(env, kept_bytes=int(size * 1.5))
    ids = [env.a("POST", "/hunt/rules", json={"rules": [RULE]}).json["data"]["hunt_id"]]
    ids.append(env.a("POST", "/hunt/rules", json={"rules": [RULE]}).json["data"]["hunt_id"])
    assert env.a("GET", f"/hunt/jobs/{ids[0]}").status_code == 404  # over the budget: dropped
    assert _job(env, ids[1])["matches"] == 10
