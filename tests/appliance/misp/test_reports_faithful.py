"""Reports against MISP's real refusals: blocklist, role permissions, proxies, 5xx, big queues."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

from appliance.misp import day_event_uuid
from tests.fakemisp import FakeMisp

from .conftest import Clock, MakeSync, write_artifacts

EP = {"uuid": "5a1e8b4c-0000-4000-8000-000000000001", "hostname": "WIN-HOST01", "ip": "192.0.2.10"}
NS = "3f1b6f5e-8a53-4c0e-9d0e-6b1f0c7c2a11"
DAY = dt.date(2026, 11, 28)


def report(root: Path, n: int, **kwargs: Any) -> Path:
    return write_artifacts(root / "artifacts", event_hash=f"{n:040x}", **kwargs)


def edr_objects(fake: FakeMisp) -> list[Any]:
    with fake.lock:
        return [o for o in fake.model.objects.values() if o.name == "edr-report"]


def test_a_settings_change_during_a_push_never_pushes_a_report_twice(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path
) -> None:
    """The e2e duplicate: a push bound before a settings change, then a scan, pushed again.

    `run_pending` took `self.reports.push` before the lock; `update_settings` built a new pusher
    whose ledger was read before that push finished, so the next scan queued the report again.
    """
    sync = make_sync()
    report(tmp_path, 1)
    assert sync.scan_artifacts() == 1
    push = sync.reports.push  # what the worker held while an admin saved the settings
    sync.update_settings({"pull_interval": 600.0})
    assert push().pushed == 1
    assert sync.scan_artifacts() == 0
    sync.push_reports()
    assert len(fake.requests_to("/objects/add")) == 1 and len(edr_objects(fake)) == 1


def test_racing_scans_queue_a_report_once(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path
) -> None:
    sync = make_sync()
    for n in range(20):
        report(tmp_path, n)
    counts: list[int] = []
    threads = [
        threading.Thread(target=lambda: counts.append(sync.scan_artifacts())) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 20 and len(sync.storage.reports) == 20


def test_blocklisted_day_event_moves_to_a_new_generation(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path
) -> None:
    """Point 2: a deleted day event's uuid is blocklisted; later reports of that day still land."""
    sync = make_sync()
    sync.on_report(EP, report(tmp_path, 1))
    sync.push_reports()
    first = day_event_uuid(NS, DAY)
    with fake.lock:
        ev = fake.model.find_event(first)
        assert ev is not None
        fake.model.delete_event(ev.id)  # an analyst deletes the day's event
    sync.on_report(EP, report(tmp_path, 2))
    result = sync.push_reports()
    assert result is not None and result.pushed == 1 and result.dead == 0
    second = day_event_uuid(NS, DAY, 1)
    with fake.lock:
        ev2 = fake.model.find_event(second)
        assert ev2 is not None and len(fake.model.objects_of(ev2.id)) == 1
    status = sync.status()["reports"]
    assert status["day_generations"] == {DAY.isoformat(): 1}
    assert "blocklisted" in status["notes"]["blocklist"]
    # the generation is durable: a restart keeps using the new event
    sync2 = make_sync()
    sync2.on_report(EP, report(tmp_path, 3))
    sync2.push_reports()
    with fake.lock:
        assert len(fake.model.objects_of(ev2.id)) == 2


def test_one_bad_report_is_dead_lettered_and_the_rest_go_on(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path
) -> None:
    """Point 3: a proxy's HTML 413 is this report's error, not a global back-off."""
    fake.max_body = 200_000
    sync = make_sync(report_zip_files=False)
    big = report(tmp_path, 1, files={"big.bin": ("filedump", bytes(range(256)) * 1024)})
    sync.on_report(EP, big)
    sync.on_report(EP, report(tmp_path, 2))
    result = sync.push_reports()
    assert result is not None and result.pushed == 1 and result.dead == 1
    assert sync.client.ready() and sync.client.next_attempt == 0.0  # nothing else waits
    status = sync.status()
    assert status["reports"]["dead_letters"] == 1 and status["reports"]["queued"] == 0
    (dead,) = sync.dead_letters("reports")
    assert "413" in dead["error"] and dead["item"]["dir"] == str(big)
    # the operator raises the proxy's limit and retries the dead letter
    fake.max_body = None
    assert sync.retry_dead_letters([dead["id"]]) == 1
    result = sync.push_reports()
    assert result is not None and result.pushed == 1
    assert len(edr_objects(fake)) == 2 and sync.dead_letters() == []


def test_server_errors_count_per_report_then_dead_letter(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path, clock: Clock
) -> None:
    """Point 3: a 500 is retried `report_max_attempts` times for that report, without back-off."""
    sync = make_sync(report_max_attempts=2)
    sync.on_report(EP, report(tmp_path, 1))
    fake.inject("500", "/objects/add", times=2)
    first = sync.push_reports()
    assert first is not None and first.retried == 1 and sync.client.ready()
    second = sync.push_reports()
    assert second is not None and second.dead == 1
    assert sync.status()["dead_letters"]["reports"] == 1
    sync.pull_iocs()  # the pull was never held back


def test_publish_without_perm_publish_is_skipped_and_reported(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path
) -> None:
    """Point 4: the stock User role cannot publish: the object stays pushed, the status says why."""
    sync = make_sync(report_publish=True)
    sync.on_report(EP, report(tmp_path, 1))
    result = sync.push_reports()
    assert result is not None and result.pushed == 1 and result.pending == 0
    assert fake.requests_to("/events/publish") == []
    status = sync.status()
    assert status["permissions"]["perm_publish"] is False
    assert "perm_publish" in status["missing_permissions"]
    assert "perm_publish" in status["reports"]["notes"]["publish"]
    assert len(edr_objects(fake)) == 1


def test_missing_tag_the_role_cannot_create_is_reported(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path
) -> None:
    """Point 5: MISP drops a tag it lacks when the role has no perm_tag_editor (Tag::captureTag)."""
    with fake.lock:
        fake.model.known_tags.clear()  # the TLP taxonomy is not enabled on this MISP
    sync = make_sync()
    sync.on_report(EP, report(tmp_path, 1))
    sync.push_reports()
    with fake.lock:
        ev = fake.model.find_event(day_event_uuid(NS, DAY))
        assert ev is not None and ev.tags == []
    note = sync.status()["reports"]["notes"]["tags"]
    assert "tlp:amber" in note and "perm_tag_editor" in note


def test_settings_and_sightings_never_wait_for_a_push_in_flight(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path
) -> None:
    """Point 10: a report push stuck on the network holds no lock that settings need."""
    sync = make_sync(read_timeout=120.0)  # the held request must outlast a slow machine
    sync.on_report(EP, report(tmp_path, 1))
    held = fake.inject("hold", "/objects/add", times=1)
    pusher = threading.Thread(target=sync.push_reports)
    pusher.start()
    try:
        assert held.arrived.wait(30), "the push never reached MISP"
        done = threading.Event()

        def admin() -> None:
            sync.update_settings({"pull_interval": 120.0})
            sync.status()
            sync.flush_sightings()
            done.set()

        threading.Thread(target=admin, daemon=True).start()
        assert done.wait(30), "settings waited for the push"
        assert pusher.is_alive()  # the push was still in flight all along
    finally:
        held.release.set()
        pusher.join(30)
    assert sync.settings.pull_interval == 120.0


def test_reports_go_in_bounded_slices_paced_per_hour(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path, clock: Clock
) -> None:
    """Point 10: a queue of 25 is pushed 10 at a time, at most report_max_per_hour per hour."""
    sync = make_sync(report_max_per_hour=12)
    for n in range(25):
        sync.on_report(EP, report(tmp_path, n))
    pushed = [sync.push_reports().pushed for _ in range(3)]  # type: ignore[union-attr]
    assert pushed == [10, 2, 0]
    backfill = sync.status()["reports"]["backfill"]
    assert backfill["pushed_last_hour"] == 12 and backfill["remaining"] == 13
    clock.advance(3601)
    assert sync.push_reports().pushed == 10  # type: ignore[union-attr]


def test_backfill_starts_when_misp_was_enabled_unless_a_date_is_chosen(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path
) -> None:
    """Point 10: enabling MISP does not queue every report the manager ever held."""
    for n in range(5):
        report(tmp_path, n, time="2026-11-20T08:00:00Z")  # a week before MISP was enabled
    report(tmp_path, 9)  # today
    sync = make_sync()
    assert sync.scan_artifacts() == 1
    assert sync.status()["reports"]["backfill"]["skipped_before_since"] == 5
    sync.update_settings({"report_since": "2026-11-20"})
    assert sync.scan_artifacts() == 5
