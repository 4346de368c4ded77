"""Reports: edr-report objects in the day's event, attachments, idempotency, restarts, template."""

from __future__ import annotations

import datetime as dt
import io
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from pymisp import MISPObject

from appliance.misp import MispUnavailable, day_event_uuid
from appliance.misp.reports import build_report_object
from tests.fakemisp import FakeMisp

from .conftest import Clock, MakeSync, base_settings, write_artifacts

EP = {"uuid": "5a1e8b4c-0000-4000-8000-000000000001", "hostname": "WIN-HOST01", "ip": "192.0.2.10"}
NS = "3f1b6f5e-8a53-4c0e-9d0e-6b1f0c7c2a11"
PE = b"MZ\x90\x00" + bytes(range(256)) * 8
MEMDUMP = b"LSASS MEMORY " * 100


def objects(fake: FakeMisp) -> list[dict[str, Any]]:
    with fake.lock:
        return [fake.model.render_object(o) for o in fake.model.objects.values()]


def attachment(obj: dict[str, Any], relation: str) -> list[dict[str, Any]]:
    with_data = []
    for a in obj["Attribute"]:
        if a["object_relation"] == relation:
            with_data.append(a)
    return with_data


def raw_of(fake: FakeMisp, attr_uuid: str) -> bytes:
    with fake.lock:
        data = fake.model.attribute_by_uuid(attr_uuid).data
    assert data is not None
    return data


def test_first_report_creates_the_day_event_then_adds_the_object(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path
) -> None:
    sync = make_sync()
    d1 = write_artifacts(
        tmp_path / "artifacts",
        files={
            "evil.exe": ("filedump", PE),
            "lsass.dmp": ("memdump", MEMDUMP),
            "run.reg": ("regdump", b"REGEDIT4"),
        },
    )
    assert sync.on_report(EP, d1)
    assert sync.push_reports().pushed == 1
    day_uuid = day_event_uuid(NS, dt.date(2026, 11, 28))
    assert day_uuid == str(uuid.uuid5(uuid.UUID(NS), "edr-reports/2026-11-28"))
    seq = [
        (r.method, r.path)
        for r in fake.requests
        if not r.path.startswith(("/servers", "/users", "/attributes"))
    ]
    assert seq == [
        ("HEAD", f"/events/view/{day_uuid}"),
        ("POST", "/events/add"),
        ("POST", f"/objects/add/{day_uuid}"),
    ]
    ev_body = fake.requests_to("/events/add")[0].body
    assert ev_body["info"] == "EDR detection reports collected on 2026-11-28"
    assert ev_body["distribution"] == "0" and ev_body["Tag"] == [{"name": "tlp:amber"}]
    (obj,) = objects(fake)
    assert obj["name"] == "edr-report"
    rel = {a["object_relation"]: a["value"] for a in obj["Attribute"]}
    assert rel["id"] == "f00d" * 10 and rel["endpoint-id"] == EP["uuid"]
    assert rel["hostname"] == "WIN-HOST01" and rel["ip"] == "192.0.2.10"
    assert rel["comment"] == "Event triggering Mimikatz caught on endpoint"
    assert {a["value"] for a in attachment(obj, "command")} == {"00-cmd0.json", "01-cmd1.json"}
    assert [a["value"] for a in attachment(obj, "executable")] == ["evil.exe.zip"]
    assert [a["value"] for a in attachment(obj, "additional-file")] == ["run.reg.zip"]
    assert all("lsass" not in a["value"] for a in obj["Attribute"])  # never memory dumps
    # Attachments decode to the original bytes (the BytesIO trap) and the zip opens with stdlib.
    event_attr = attachment(obj, "event")[0]
    assert raw_of(fake, event_attr["uuid"]) == (d1 / "event.json").read_bytes()
    exe = raw_of(fake, attachment(obj, "executable")[0]["uuid"])
    assert zipfile.ZipFile(io.BytesIO(exe)).read("evil.exe", pwd=b"infected") == PE
    assert fake.requests_to("/events/edit") == []


def test_second_report_probes_the_existing_day_event(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path
) -> None:
    sync = make_sync()
    sync.on_report(EP, write_artifacts(tmp_path / "artifacts", event_hash="1" * 40))
    sync.push_reports()
    sync.on_report(EP, write_artifacts(tmp_path / "artifacts", event_hash="2" * 40))
    sync.push_reports()
    assert [r.status for r in fake.requests_to("/events/view", "HEAD")] == [404, 200]
    assert len(fake.requests_to("/events/add")) == 1
    assert len(objects(fake)) == 2
    with fake.lock:
        assert len(fake.model.events) == 1


def test_report_is_valid_against_the_bundled_template(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path
) -> None:
    sync = make_sync()
    sync.on_report(EP, write_artifacts(tmp_path / "artifacts", files={"x.exe": ("filedump", PE)}))
    sync.push_reports()
    (stored,) = objects(fake)
    again = MISPObject("edr-report", standalone=False, strict=True)
    again.from_dict(**stored)
    assert again._validate()
    template = again._definition
    for a in stored["Attribute"]:
        spec = template["attributes"][a["object_relation"]]
        assert a["type"] == spec["misp-attribute"]
    assert stored["template_uuid"] == template["uuid"]


def test_lost_response_is_a_success_on_retry(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path, clock: Clock
) -> None:
    sync = make_sync()
    sync.on_report(EP, write_artifacts(tmp_path / "artifacts"))
    fake.inject("truncate", "/objects/add", times=1)
    with pytest.raises(MispUnavailable):
        sync.push_reports()
    clock.advance(11)
    result = sync.push_reports()
    assert result.already == 1 and result.pending == 0
    assert len(objects(fake)) == 1
    assert [r.status for r in fake.requests_to("/objects/add")][-1] == 403


def test_down_then_restart_pushes_each_report_once(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path, clock: Clock
) -> None:
    fake.stop()
    sync = make_sync()
    for n in "12":
        sync.on_report(EP, write_artifacts(tmp_path / "artifacts", event_hash=n * 40))
    sync.run_pending()
    assert sync.status()["reports"]["queued"] == 2
    assert sync.status()["reports"]["last_error"]
    sync.close()
    fake.start()
    clock.advance(61)
    restarted = make_sync()
    restarted.run_pending()
    assert len(objects(fake)) == 2
    again = make_sync()
    assert not again.on_report(
        EP,
        tmp_path / "artifacts" / EP["uuid"] / "{8a3f0c1e-0000-0000-0000-000000000000}" / ("1" * 40),
    )
    again.run_pending()
    assert len(objects(fake)) == 2
    assert len(fake.requests_to("/objects/add")) == 2


def test_artifact_scan_finds_complete_reports_only(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path
) -> None:
    sync = make_sync()
    write_artifacts(tmp_path / "artifacts", event_hash="3" * 40)
    incomplete = write_artifacts(
        tmp_path / "artifacts", event_hash="4" * 40, files={"a.exe": ("filedump", PE)}
    )
    (incomplete / "a.exe").unlink()  # still uploading
    sync.run_pending()
    assert [o["Attribute"][0]["value"] for o in objects(fake)] == ["3" * 40]
    (incomplete / "a.exe").write_bytes(PE)
    assert sync.scan_artifacts() == 1
    sync.push_reports()
    assert len(objects(fake)) == 2


def test_report_without_identity_is_rejected_client_side(tmp_path: Path, fake: FakeMisp) -> None:
    directory = tmp_path / "bare"
    directory.mkdir()
    settings = base_settings(fake)
    with pytest.raises(Exception, match="At least one of the following attributes"):
        build_report_object(
            directory, endpoint_uuid="", hostname="", ip="", settings=settings, now=0.0
        )


def test_oversize_files_become_a_comment(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path
) -> None:
    sync = make_sync(report_max_file_size=4096, report_zip_files=False)
    big = b"B" * 5000
    sync.on_report(
        EP,
        write_artifacts(
            tmp_path / "artifacts",
            files={"big.bin": ("filedump", big), "small.bin": ("filedump", b"small")},
        ),
    )
    sync.push_reports()
    (obj,) = objects(fake)
    assert [a["value"] for a in attachment(obj, "additional-file")] == ["small.bin"]
    comment = attachment(obj, "comment")[0]["value"]
    assert "big.bin skipped (5000 bytes, sha256 " in comment
    small = attachment(obj, "additional-file")[0]
    assert raw_of(fake, small["uuid"]) == b"small"


def test_server_side_rejection_is_dropped_not_retried(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakemisp import data

    monkeypatch.setattr(data, "templates", lambda: {})  # a MISP without the edr-report template
    sync = make_sync()
    sync.on_report(EP, write_artifacts(tmp_path / "artifacts"))
    result = sync.push_reports()
    assert result.rejected == 1 and result.pending == 0
    assert sync.status()["reports"]["rejected"] == 1
    assert fake.requests_to("/objects/add")[0].status == 403


def test_bad_key_keeps_reports_queued(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path, clock: Clock
) -> None:
    sync = make_sync()
    sync.pull_iocs()  # connected
    sync.on_report(EP, write_artifacts(tmp_path / "artifacts"))
    fake.inject("403", "/objects/add", times=1)
    with pytest.raises(MispUnavailable, match="Authentication failed"):
        sync.push_reports()
    assert sync.status()["reports"]["queued"] == 1
    clock.advance(11)
    assert sync.push_reports().pushed == 1


def test_publish_option_publishes_the_day_event(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path
) -> None:
    fake.role["perm_publish"] = True  # an "Org Admin"-like role; the stock User cannot publish
    sync = make_sync(report_publish=True, report_tags=["tlp:red"], report_distribution=1)
    sync.on_report(EP, write_artifacts(tmp_path / "artifacts"))
    sync.push_reports()
    day_uuid = day_event_uuid(NS, dt.date(2026, 11, 28))
    assert [r.path for r in fake.requests_to("/events/publish")] == [f"/events/publish/{day_uuid}"]
    body = fake.requests_to("/events/add")[0].body
    assert body["Tag"] == [{"name": "tlp:red"}] and body["distribution"] == "1"
    with fake.lock:
        (ev,) = fake.model.events.values()
        assert ev.published and ev.publish_timestamp


def test_disabled_reports_are_not_queued(
    fake: FakeMisp, make_sync: MakeSync, tmp_path: Path
) -> None:
    sync = make_sync(reports_enabled=False)
    assert not sync.on_report(EP, write_artifacts(tmp_path / "artifacts"))
    sync.run_pending()
    assert fake.requests_to("/objects/add") == [] and sync.status()["reports"]["queued"] == 0
