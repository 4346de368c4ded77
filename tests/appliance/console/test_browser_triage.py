"""Alert triage in headless Chromium against a real manager: the queue, the alert dialog, bulk
actions, XSS payloads shown as text, and a 10,000-row queue paged by cursor.

Own manager and browser (module scope). Each test signs in as it needs and makes the alerts it
looks at, under signatures of its own, so it passes alone and in any order; every test asserts an
empty browser console and saves a screenshot under tests/artifacts/console/.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.support.waiting import wait_for

from .browser import Browser, available
from .harness import Manager, as_admin, logged_in_browser, sign_out, start_manager, sysmon_event

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not available(), reason="Debian chromium/chromedriver not installed"),
]

XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    m = start_manager(tmp_path_factory.mktemp("triage"))
    yield m
    m.close()


@pytest.fixture(scope="module")
def browser(manager: Manager) -> Iterator[Browser]:
    b = logged_in_browser(manager)
    yield b
    b.close()


def _alerts(manager: Manager, **params: str) -> dict[str, object]:
    res = manager.admin("GET", "/alerts", params=params)
    assert res.status_code == 200, res.text
    data: dict[str, object] = res.json()["data"]
    return data


def _alert(manager: Manager, signature: str, status: str = "") -> dict[str, object]:
    """A detection `signature` on the module's endpoint, once it is an alert (set to `status`)."""
    event = sysmon_event(
        manager.hostname,
        image=f"C:\\Tools\\{signature}.exe",
        command_line=signature,
        signature=signature,
        criticality=7,
    )
    assert manager.post_logs([event]).status_code == 200
    found = wait_for(
        lambda: _alerts(manager, status="all", signature=signature)["alerts"], 60, "the alert"
    )
    alert: dict[str, object] = found[0]
    wait_for(lambda: _searchable(manager, signature), 60, "the event indexed")  # the dialog
    if status:
        res = manager.admin(
            "POST", f"/alerts/{alert['endpoint']}/{alert['event_hash']}", json={"status": status}
        )
        assert res.status_code == 200, res.text
    return alert


def _queue(signature: str, **params: str) -> str:
    """The detections page route of one signature's alerts."""
    query = "&".join(f"{k}={quote(v)}" for k, v in {**params, "signature": signature}.items())
    return f"#/detections?{query}"


def _searchable(manager: Manager, words: str) -> bool:
    res = manager.admin("GET", "/search", params={"q": words, "detections": "true"})
    return res.status_code == 200 and res.json()["data"]["total"] > 0


def test_live_detection_then_triage_in_the_dialog(
    browser: Browser, manager: Manager, clean_console
) -> None:
    as_admin(browser, manager)
    signature = "Triage-" + XSS
    browser.go("#/detections")
    browser.wait_text("#live-state", "connected")
    ack = manager.post_logs(
        [
            sysmon_event(
                manager.hostname,
                image="C:\\Tools\\" + XSS + ".exe",
                command_line=XSS,
                signature=signature,
                criticality=9,
            )
        ]
    )
    assert ack.status_code == 200, ack.text
    row = browser.wait_css("tbody tr[data-live]")
    assert "Triage-<img" in row.text and "New" in row.text
    browser.screenshot("20-alerts-live")
    browser.wait(lambda d: _searchable(manager, "Triage"), timeout=60)  # indexed (busy box)
    browser.go(_queue(signature))  # the stored queue (fleet store) lists it too
    row = browser.wait_css("tbody tr[data-status=new]")
    browser.button("Open", row).click()
    dialog = browser.wait_css("dialog[open]")
    browser.wait(lambda d: "Event JSON" in dialog.text)  # the indexed event
    assert XSS in dialog.text
    browser.field("Alert status").send_keys("In progress")
    browser.button("Assign to me", dialog).click()
    browser.field("Comment").send_keys("checking " + XSS)
    browser.button("Save", dialog).click()
    browser.wait_text("dialog[open] .alert-out", "Saved")
    assert "checking " + XSS in browser.css("dialog[open] .comment-box").text
    alert = _alerts(manager, status="in_progress", signature=signature)["alerts"][0]  # type: ignore[index]
    assert alert["assignee"] == "alice" and alert["comments"] == 1
    browser.screenshot("21-alert-dialog")
    browser.button("Mark false positive", dialog).click()
    browser.wait_text("dialog[open] dd.status-false_positive", "False positive")
    browser.button("Close", dialog).click()
    browser.wait(lambda d: not browser.all("dialog[open]"))
    browser.wait_text("#alerts-summary", "0 of 0 alert(s) shown")  # none of it left open
    assert _alerts(manager, status="false_positive", signature=signature)["total"] == 1
    audit = manager.admin("GET", "/audit").json()["data"]
    changes = [a["detail"] for a in audit if a["action"] == "alert.update"]
    assert {"status": ["in_progress", "false_positive"]} in changes


def test_bulk_actions(browser: Browser, manager: Manager, clean_console) -> None:
    as_admin(browser, manager)
    events = [
        sysmon_event(
            manager.hostname,
            image=f"C:\\x{i}.exe",
            command_line=f"x{i}",
            signature="Bulk",
            criticality=i,
        )
        for i in range(3)
    ]
    assert manager.post_logs(events).status_code == 200
    browser.wait(lambda d: _alerts(manager, signature="Bulk")["total"] == 3)
    browser.go(_queue("Bulk"))
    browser.wait_text("#alerts-summary", "3 of 3")
    browser.css("thead input[type=checkbox]").click()
    browser.field("Set status of selected").send_keys("Closed")
    browser.button("Apply to selected").click()
    browser.wait_text("main .bulk", "3 alert(s) changed")
    browser.wait_text("#alerts-summary", "0 of 0")
    assert _alerts(manager, status="closed", signature="Bulk")["total"] == 3
    browser.screenshot("22-alerts-bulk")


def test_ten_thousand_alerts_open_fast_and_page_by_cursor(
    browser: Browser, manager: Manager, clean_console
) -> None:
    as_admin(browser, manager)
    _detections(manager, "Volume", 10_000)
    browser.go("#/dashboard")
    started = time.perf_counter()
    browser.go(_queue("Volume", sort="critical"))
    browser.wait_text("#alerts-summary", "100 of 10000")
    elapsed = time.perf_counter() - started
    print(f"10,000-alert queue: first page rendered in {elapsed * 1000:.0f} ms")
    assert len(browser.all("tbody tr")) == 100
    browser.button("Load more").click()
    browser.wait_text("#alerts-summary", "200 of 10000")
    hashes = [r.get_attribute("data-hash") for r in browser.all("tbody tr")]
    assert len(set(hashes)) == 200
    browser.screenshot("23-alerts-10000")


def _rule(name: str, attack: list[dict[str, str]]) -> dict[str, object]:
    return {
        "Name": name,
        "Tags": [],
        "Meta": {
            "Events": {"Microsoft-Windows-Sysmon/Operational": [1]},
            "Criticality": 5,
            "ATTACK": attack,
            "Schema": "2.0.0",
        },
        "Matches": ["$a: Image ~= 'never-matches-anything'"],
        "Condition": "$a",
    }


def _detections(manager: Manager, signature: str, count: int) -> None:
    """`count` detections of `signature` straight into the fleet store (status new)."""
    now = time.time()
    rows = [
        (manager.endpoint_uuid, now - i, now, f"{signature}-{i:08x}", [signature], i % 11, None)
        for i in range(count)
    ]
    for start in range(0, len(rows), 1000):
        manager.ctx.store.detections.add_many(rows[start : start + 1000])
    manager.ctx.store.db.write(lambda cur: None)  # written when this returns


def test_attack_matrix_with_drill_down(browser: Browser, manager: Manager, clean_console) -> None:
    as_admin(browser, manager)
    _detections(manager, "MatrixMany", 10_000)
    _detections(manager, "MatrixFew", 3)
    rules = [
        _rule(
            "MatrixMany",
            [{"ID": "T1003.001", "Tactic": "credential-access", "Description": "LSASS Memory"}],
        ),
        _rule(
            "MatrixFew",
            [
                {"ID": "T1059.001", "Tactic": "execution", "Description": "PowerShell"},
                {"ID": "T1003.001", "Tactic": "credential-access"},
            ],
        ),
    ]
    assert manager.admin("POST", "/rules", json=rules).status_code == 200
    browser.go("#/attack")
    cell = browser.wait_css("button[data-technique='T1003.001']")
    assert "10003" in cell.text  # 10,000 MatrixMany + 3 MatrixFew detections
    cols = [c.text.split("\n")[0] for c in browser.all(".attack-col h3")]
    assert cols[0].lower().startswith("execution") and "credential" in cols[1].lower()
    browser.screenshot("24-attack-matrix")
    cell.click()
    drill = browser.wait_text("main section[aria-live]", "2 rule(s)")
    assert "MatrixMany — 10000 detection(s)" in drill.text
    drill.find_element("link text", "MatrixFew").click()
    browser.wait_text("#alerts-summary", "3 of 3")  # the 3 MatrixFew alerts
    assert "T1003.001 T1059.001" in browser.css("main tbody tr").text


def test_admin_enrollment_health_and_audit_log(
    browser: Browser, manager: Manager, clean_console
) -> None:
    import zipfile

    as_admin(browser, manager)
    _alert(manager, "AuditFP", "false_positive")  # an alert.update in the audit log
    browser.go("#/admin")
    ca = manager.admin("GET", "/enroll/ca").json()["data"]
    assert browser.wait_css("#ca-fp").text == ca["ca_sha256"]
    browser.field("Group").send_keys("lab")
    browser.button("Create token").click()
    browser.wait_text("#token-out", "shown once")
    browser.field("Hostname").send_keys("AIRGAP-<b>1</b>")
    browser.button("Download offline bundle").click()
    browser.wait_text("#bundle-out", "downloaded")
    zips = lambda: list(browser.downloads.glob("heron-bundle-*.zip"))  # noqa: E731
    browser.wait(lambda d: zips() and zipfile.is_zipfile(zips()[0]))
    assert "client.key" in zipfile.ZipFile(zips()[0]).namelist()
    health = browser.css("section[aria-labelledby=adm-health]").text
    assert manager.hostname in health
    flt = browser.field("Filter the audit log")
    flt.send_keys("alert.update")
    audit = browser.wait_text("section[aria-labelledby=adm-audit]", "false_positive")
    assert "alice (admin)" in audit.text
    browser.screenshot("25-admin")
    # the audit log pages by cursor: 500 entries first, older ones on demand
    for i in range(600):
        manager.ctx.store.audit.record(1_000_000.0 + i, "seed", "admin", "seed.entry", f"t{i}")
    manager.ctx.store.db.write(lambda cur: None)
    browser.go("#/dashboard")
    browser.go("#/admin")
    caption = "section[aria-labelledby=adm-audit] caption"
    browser.wait_text(caption, "500 entries loaded")
    browser.css("#audit-more").click()
    browser.wait_text(caption, "entries loaded, newest first")
    browser.wait(lambda d: "500 entries" not in browser.css(caption).text)
    loaded = int(browser.css(caption).text.split()[0])
    assert loaded > 600  # the seeded ones plus what this module's tests did
    health = browser.css("section[aria-labelledby=adm-health]").text
    assert "Rules (count, state, hash)" in health and "Losses" in health
    browser.go("#/dashboard")
    browser.go("#/admin")  # the new bundle's endpoint is listed, its name shown as text
    browser.wait_text("section[aria-labelledby=adm-health]", "AIRGAP-<b>1</b>")


def test_dashboard_overview_charts(browser: Browser, manager: Manager, clean_console) -> None:
    as_admin(browser, manager)
    _detections(manager, "DashRule", 50)  # the module has fewer than 10 rules: it is charted
    browser.go("#/dashboard")
    chart = browser.wait_css("section[aria-labelledby=dash-top-eps] svg")
    assert manager.hostname in chart.text
    assert "DashRule" in browser.css("section[aria-labelledby=dash-rules] svg").text
    assert browser.all("section[aria-labelledby=dash-time] svg")
    open_alerts = int(_alerts(manager)["total"])  # type: ignore[call-overload]
    browser.wait_text(".cards", f"{open_alerts}\nOpen alerts")
    browser.screenshot("26-dashboard")


def test_analyst_triages_but_cannot_run_commands(
    browser: Browser, manager: Manager, clean_console
) -> None:
    _alert(manager, "AnalystFP", "false_positive")
    sign_out(browser, manager)
    key = browser.wait_css("input[name=api_key]")
    key.send_keys(manager.analyst_key)
    key.submit()
    browser.wait_text("#who", "bob (analyst)")
    browser.go(_queue("AnalystFP", status="false_positive"))
    row = browser.wait_css("tbody tr[data-status=false_positive]")
    browser.button("Open", row).click()
    dialog = browser.wait_css("dialog[open]")
    browser.wait(lambda d: "Event JSON" in dialog.text)
    assert not browser.button("Hash the image", dialog).is_enabled()
    browser.field("Comment").send_keys("confirmed benign by bob")
    browser.button("Save", dialog).click()
    browser.wait_text("dialog[open] .comment-box", "bob: confirmed benign by bob")
    browser.screenshot("27-analyst-triage")
    browser.button("Close", dialog).click()
