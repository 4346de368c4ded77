"""End-to-end triage in headless Chromium against a real manager and a real MISP stand-in.

A detection arrives live → the analyst opens it, sees the process tree (parent and child from the
stored process-creation events, the detected process highlighted), runs `hash` on the image (the
agent side is played by this test with the agent's real command runner, over mutual TLS) and sees
the result, marks it a false positive and MISP receives a type-1 sighting of its IoC, tries a
suppression on the stored detections, saves it, and the same activity sent again no longer
alerts.
"""

from __future__ import annotations

import hashlib
import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.commands.runner import run_command
from rules import wire
from tests.appliance.misp.conftest import seed_event
from tests.fakemisp import DEFAULT_KEY, FakeMisp

from .browser import Browser, available
from .harness import Manager, logged_in_browser, start_manager, sysmon_event

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not available(), reason="Debian chromium/chromedriver not installed"),
]


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    m = start_manager(tmp_path_factory.mktemp("e2e"))
    yield m
    m.close()


@pytest.fixture(scope="module")
def browser(manager: Manager) -> Iterator[Browser]:
    b = logged_in_browser(manager)
    yield b
    b.close()


def _agent_runs_next_command(manager: Manager) -> wire.CommandResult | None:
    """Play the agent once: GET /commands over mTLS, run it for real, POST the result."""
    kw: dict[str, Any] = {"cert": manager.client_cert, "verify": manager.ca_path, "timeout": 10}
    res = requests.get(manager.endpoint_url + wire.ROUTE_COMMANDS, **kw)
    if res.status_code == 204:
        return None
    assert res.status_code == 200, res.text
    result = run_command(wire.Command.from_dict(res.json()))
    posted = requests.post(manager.endpoint_url + wire.ROUTE_COMMANDS, json=result.to_dict(), **kw)
    assert posted.status_code == 200, posted.text
    return result


def _guid() -> str:
    return "{" + str(uuidlib.uuid4()) + "}"


def _proc(manager: Manager, image: str, guid: str, parent: str, **extra: Any) -> dict[str, Any]:
    ev = sysmon_event(manager.hostname, image=image, command_line=image, **extra)
    ev["Event"]["EventData"].update(ProcessGuid=guid, ParentProcessGuid=parent)
    return ev


def _one_whoami(browser: Browser, manager: Manager) -> None:
    """A whoami.exe process event stored and searchable: `test_alert_to_decision`'s child, or
    posted here when that test has not run, so the hunting pages' tests pass alone and in any
    order."""

    def stored() -> int:
        found = manager.admin("GET", "/search", params={"q": "whoami.exe"}).json()["data"]
        return int(found["total"])

    if stored() == 0:
        ev = _proc(manager, "C:\\Windows\\System32\\whoami.exe", _guid(), _guid())
        assert manager.post_logs([ev]).status_code == 200
    browser.wait(lambda d: stored() >= 1, timeout=60)


def _stored_count(manager: Manager, guid: str) -> int:
    found = manager.admin("GET", "/search", params={"q": f'ProcessGuid:"{guid}"'})
    total: int = found.json()["data"]["total"]
    return total


def test_alert_to_decision(
    browser: Browser, manager: Manager, clean_console, tmp_path: Path
) -> None:
    image = tmp_path / "evil-tool.exe"
    image.write_bytes(b"MZ not really a PE, but bytes to hash" * 100)
    sha = hashlib.sha256(image.read_bytes()).hexdigest()
    with FakeMisp() as fake:
        seed_event(fake, [("sha256", sha)])
        settings = {
            "enabled": True,
            "url": fake.url,
            "api_key": DEFAULT_KEY,
            "sighting_batch_delay": 0.0,
            "read_timeout": 30.0,
        }
        assert manager.admin("PUT", "/misp/settings", json=settings).status_code == 200
        pulled = manager.admin("POST", "/misp/sync", json={"full": True})  # synchronous pull
        assert pulled.status_code == 200, pulled.text

        parent, proc, child = _guid(), _guid(), _guid()
        browser.go("#/detections")
        browser.wait_text("#live-state", "connected")
        started = time.perf_counter()
        batch = [
            _proc(manager, "C:\\Windows\\explorer.exe", parent, _guid()),
            _proc(manager, str(image), proc, parent, signature="E2E-EvilTool", criticality=10),
            _proc(manager, "C:\\Windows\\System32\\whoami.exe", child, proc),
        ]
        batch[1]["Event"]["EventData"]["Hashes"] = f"SHA256={sha}"
        assert manager.post_logs(batch).status_code == 200
        row = browser.wait_css("tbody tr[data-live]")
        print(f"live detection shown {1000 * (time.perf_counter() - started):.0f} ms after POST")
        assert "E2E-EvilTool" in row.text
        # the analyst opens the live row once the event is stored and searchable
        browser.wait(lambda d: _stored_count(manager, child) >= 1, timeout=60)  # its own child
        browser.button("Open", row).click()
        dialog = browser.wait_css("dialog[open]")
        hit = browser.wait_css("dialog[open] .process-tree li.tree-hit", timeout=20)
        assert str(image) in hit.text and "whoami.exe" in hit.text  # the child is below it
        tree = browser.css("dialog[open] .process-tree").text
        assert tree.index("explorer.exe") < tree.index(str(image)) < tree.index("whoami.exe")
        browser.screenshot("30-e2e-process-tree")

        browser.button("Hash the image", dialog).click()
        browser.wait_text("dialog[open] .hash-result", "queued")
        browser.wait(lambda d: _agent_runs_next_command(manager) is not None)
        browser.wait_text("dialog[open] .hash-result", sha)  # the agent's real sha256
        assert "completed" in browser.css("dialog[open] .hash-result").text
        browser.screenshot("31-e2e-hash-result")

        browser.button("Mark false positive", dialog).click()
        browser.wait_text("dialog[open] .alert-out", f"false positive sent to MISP for {sha}")
        assert manager.admin("POST", "/misp/sync", json={}).status_code == 200
        with fake.lock:
            sightings = [
                (s.type, s.value if hasattr(s, "value") else "") for s in fake.model.sightings
            ]
        assert any(t == "1" for t, _ in sightings), sightings
        browser.screenshot("32-e2e-false-positive")

        # a suppression from the alert: tried on stored detections, then saved
        browser.button("Try on stored events", dialog).click()
        browser.wait_text("dialog[open] .suppress-out", "would silence 1 of 1 stored detection")
        browser.button("Suppress and close", dialog).click()
        browser.wait_text("dialog[open] .suppress-out", "Suppressed:")
        browser.screenshot("33-e2e-suppressed")
        browser.button("Close", dialog).click()
        browser.wait_text("#alerts-summary", "0 of 0")  # nothing left in the open queue

    # the same activity again (a new process, same image and command line): stored, no alert
    again = _proc(manager, str(image), _guid(), parent, signature="E2E-EvilTool", criticality=10)
    assert manager.post_logs([again]).status_code == 200
    browser.wait(
        lambda d: _stored_count(manager, str(again["Event"]["EventData"]["ProcessGuid"])) == 1,
        timeout=60,
    )
    every = manager.admin("GET", "/alerts", params={"status": "all", "signature": "E2E-EvilTool"})
    assert len(every.json()["data"]["alerts"]) == 1, every.text  # only the first one
    assert browser.css("#alerts-summary").text.startswith("0 of 0")


def test_command_results_on_the_endpoint_page(
    browser: Browser, manager: Manager, clean_console, tmp_path: Path
) -> None:
    for name in ("a.txt", "b.log"):
        (tmp_path / name).write_text(f"<b>{name}</b>")
    fetched = tmp_path / "a.txt"
    body = {"name": "ls", "args": [str(tmp_path)], "fetch": [str(fetched)]}
    assert (
        manager.admin("POST", f"/endpoints/{manager.endpoint_uuid}/command", json=body).status_code
        == 200
    )
    browser.go(f"#/endpoints/{manager.endpoint_uuid}")
    browser.wait_text("#ep-cmds + div", "waiting for the endpoint")  # live status
    browser.wait(lambda d: _agent_runs_next_command(manager) is not None)
    box = browser.wait_text("#ep-cmds + div", "2 item(s)", timeout=20)  # refreshed while pending
    assert "completed" in box.text
    browser.css(f"button[aria-label='Show the result of ls {tmp_path}']").click()
    dialog = browser.wait_css("dialog[open]")
    assert "a.txt" in dialog.text and "b.log" in dialog.text and "Duration" in dialog.text
    sha = hashlib.sha256(fetched.read_bytes()).hexdigest()
    assert f"sha256 {sha}" in dialog.text
    browser.screenshot("33-command-result")
    browser.button("Download a.txt", dialog).click()
    target = browser.downloads / "a.txt"
    browser.wait(lambda d: target.exists() and target.read_bytes() == fetched.read_bytes())
    browser.button("Close", dialog).click()


def _upload_chunked(manager: Manager, guid: str, ehash: str, name: str, data: bytes) -> None:
    """POST /upload/dumps in 1 MiB chunks over mutual TLS, as the agent does for big files."""
    import base64

    size = 1 << 20
    parts = [data[i : i + size] for i in range(0, len(data), size)]
    for k, part in enumerate(parts, start=1):
        chunk = wire.UploadChunk(
            filename=name,
            guid=guid,
            event_hash=ehash,
            content=base64.b64encode(part).decode(),
            chunk=k,
            total=len(parts),
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
        )
        res = requests.post(
            manager.endpoint_url + wire.ROUTE_UPLOAD_DUMPS,
            json=chunk.to_dict(),
            cert=manager.client_cert,
            verify=manager.ca_path,
            timeout=30,
        )
        assert res.status_code == 200, res.text


def _big_report(target_bytes: int) -> dict[str, Any]:
    procs, conns = [], []
    i = 0
    while True:
        procs.append(
            {
                "pid": 1000 + i,
                "image": f"C:\\Program Files\\App{i}\\app{i}.exe",
                "command-line": f"app{i}.exe --flag {'x' * 200}",
                "process-guid": "{" + str(uuidlib.UUID(int=i)) + "}",
            }
        )
        conns.append(
            {
                "pid": 1000 + i,
                "image": f"app{i}.exe",
                "proto": "tcp",
                "laddr": "10.0.0.5:50000",
                "raddr": f"203.0.113.{i % 250}:443",
                "status": "ESTABLISHED",
            }
        )
        i += 1
        if i % 1000 == 0 and i * 420 > target_bytes:
            break
    return {
        "hostname": "WS-FINANCE-07",
        "start-timestamp": "2026-12-05T10:00:00Z",
        "processes": procs,
        "connections": conns,
        "modules": [],
        "drivers": [],
        "tree": [],
        "dns": {"{00000000-0000-0000-0000-000000000001}": {"198.51.100.7": {"evil.example": 3}}},
        "last_files": {"{00000000-0000-0000-0000-000000000001}": ["C:\\Users\\a\\<img src=x>.exe"]},
        "commands": [{"name": "osqueryi", "args": ["--json"], "stdout": "[]", "error": ""}],
    }


def test_five_megabyte_ir_report_renders_lazily_with_search(
    browser: Browser, manager: Manager, clean_console
) -> None:
    import json

    body = json.dumps(_big_report(5_000_000)).encode()
    assert len(body) >= 5_000_000
    guid, ehash = "{6d24c251-d7fe-40cf-8723-cea8ee2b33f2}", "cd" * 20
    _upload_chunked(manager, guid, ehash, "report.json", body)
    browser.go(f"#/endpoints/{manager.endpoint_uuid}")
    arts = browser.wait_text("section[aria-labelledby=ep-arts]", "Open report")
    times = []
    for _ in range(3):
        started = time.perf_counter()
        browser.button("Open report", arts).click()
        browser.wait_css("dialog[open] details[data-section=processes][open] tbody tr")
        times.append(time.perf_counter() - started)
        dialog = browser.css("dialog[open]")
        if len(times) < 3:
            browser.button("Close", dialog).click()
            browser.wait(lambda d: not browser.all("dialog[open]"))
    print(
        f"{len(body) / 1e6:.1f} MB IR report: opened in "
        + ", ".join(f"{t * 1000:.0f}" for t in times)
        + " ms"
    )
    # the < 1 s target is measured by benchmarks/console_timing.py, not asserted on a busy box
    assert len(browser.all("dialog[open] details[data-section=processes] tbody tr")) == 200
    search = browser.css("dialog[open] input[name=report-search]")
    search.send_keys("evil.example")
    browser.wait_text("dialog[open] .report-status", "1 row(s) match")
    assert "198.51.100.7" in browser.css("dialog[open] details[data-section=dns]").text
    search.clear()
    search.send_keys("<img src=x>")
    browser.wait_text("dialog[open] details[data-section=files]", "<img src=x>.exe")
    browser.screenshot("34-ir-report-5mb")
    browser.button("Close", dialog).click()


def test_hunting_sql_csv_retro_hunt_and_field_suggestions(
    browser: Browser, manager: Manager, clean_console
) -> None:
    _one_whoami(browser, manager)
    browser.go("#/search")
    q = browser.field("Query")
    q.send_keys("Parent")
    chips = browser.wait_css("main .suggest button")
    assert {c.text for c in browser.all("main .suggest button")} >= {
        "ParentImage:",
        "ParentCommandLine:",
        "ParentProcessGuid:",
    }
    browser.css("button[aria-label='Use field ParentImage']").click()
    assert q.get_attribute("value") == "ParentImage:"
    assert chips is not None
    browser.screenshot("35-search-suggestions")

    browser.go("#/hunt")
    sql = browser.field("SQL (one SELECT over events)")
    sql.clear()
    sql.send_keys(
        "SELECT image, count(*) AS n FROM events WHERE image LIKE '%whoami%' GROUP BY image"
    )
    browser.button("Run query").click()
    browser.wait_text("#sql-status", "1 row(s)")
    assert "whoami.exe" in browser.css("section[aria-labelledby=hunt-sql] table").text
    browser.button("Export CSV").click()
    target = browser.downloads / "heron-query.csv"
    browser.wait(lambda d: target.exists() and "whoami.exe" in target.read_text())
    assert target.read_text().splitlines()[0] == '"image","n"'

    rule = {
        "Name": "RetroWhoami",
        "Tags": [],
        "Meta": {
            "Events": {"Microsoft-Windows-Sysmon/Operational": [1]},
            "Criticality": 5,
            "Schema": "2.0.0",
        },
        "Matches": ["$i: Image ~= '(?i:whoami\\.exe$)'"],
        "Condition": "$i",
    }
    import json

    area = browser.field("Gene rules (JSON object or list)")
    browser.driver.execute_script("arguments[0].value = arguments[1];", area, json.dumps(rule))
    browser.button("Run retro-hunt").click()
    browser.wait(
        lambda d: (
            "match(es)" in browser.css("#retro-status").text
            or browser.all("section[aria-labelledby=hunt-retro] [role=alert]")
        ),
        timeout=30,
    )
    assert "1 match(es)" in browser.css("#retro-status").text, browser.css(
        "section[aria-labelledby=hunt-retro]"
    ).text
    assert "whoami.exe" in browser.css("section[aria-labelledby=hunt-retro] table").text
    browser.screenshot("36-hunting")


def test_rule_tested_against_stored_events_before_saving(
    browser: Browser, manager: Manager, clean_console
) -> None:
    import json

    rule = {
        "Name": "TryWhoami",
        "Tags": [],
        "Meta": {
            "Events": {"Microsoft-Windows-Sysmon/Operational": [1]},
            "Criticality": 5,
            "Schema": "2.0.0",
        },
        "Matches": ["$i: Image ~= '(?i:whoami\\.exe$)'"],
        "Condition": "$i",
    }
    _one_whoami(browser, manager)
    browser.go("#/rules")
    editor = browser.field("Rule (Gene JSON)")
    browser.driver.execute_script("arguments[0].value = arguments[1];", editor, json.dumps(rule))
    browser.button("Test against stored events").click()
    out = browser.wait_text("#rule-test", "Would match 1 of", timeout=30)
    assert "whoami.exe" in out.text
    assert manager.admin("GET", "/rules", params={"name": "TryWhoami"}).json()["data"] in ([], None)
    browser.screenshot("37-rule-test")


def test_endpoint_timeline_filters(browser: Browser, manager: Manager, clean_console) -> None:
    _one_whoami(browser, manager)
    browser.go(f"#/endpoints/{manager.endpoint_uuid}")
    browser.wait_text("#timeline-status", "event(s)")
    browser.field("Range").send_keys("last 24 hours")
    browser.field("Timeline query").send_keys("whoami.exe")
    browser.css("input[name=timeline-detections]").click()
    browser.button("Filter").click()
    browser.wait_text("#timeline-status", "0 event(s)")  # whoami.exe was not a detection
    browser.css("input[name=timeline-detections]").click()
    browser.button("Filter").click()
    browser.wait_text("#timeline-status", "1 event(s)")
    assert "whoami.exe" in browser.css("ol.timeline").text
    browser.screenshot("38-timeline-filters")
