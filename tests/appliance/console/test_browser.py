"""The console in headless Chromium against a real manager (waitress behind the TLS front).

One manager and one browser for the module. Each test signs in as it needs and posts the events
it looks for, so it passes alone and in any order (proof: the file's tests in reverse order).
Each test ends by asserting the browser console has no error (JavaScript errors, failed loads,
CSP violations), and saves a screenshot under tests/artifacts/console/.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.waiting import wait_for

from .browser import Browser, available
from .harness import Manager, as_admin, sign_out, start_manager, sysmon_event

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not available(), reason="Debian chromium/chromedriver not installed"),
]

RULE_NAME = "HeronTest-Mimikatz"
GOOD_RULE = {
    "Name": RULE_NAME,
    "Tags": ["test"],
    "Meta": {
        "Events": {"Microsoft-Windows-Sysmon/Operational": [1]},
        "Criticality": 10,
        "Author": "console test",
        "Schema": "2.0.0",
    },
    "Matches": ["$img: Image ~= '(?i:\\\\mimikatz\\.exe$)'"],
    "Condition": "$img",
}


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    m = start_manager(tmp_path_factory.mktemp("manager"))
    yield m
    m.close()


@pytest.fixture(scope="module")
def browser(manager: Manager) -> Iterator[Browser]:
    b = Browser(spki_hash=manager.spki_sha256_b64)
    yield b
    b.close()


@pytest.fixture
def clean_console(
    browser: Browser, request: pytest.FixtureRequest
) -> Iterator[Callable[[Callable[[str], bool]], None]]:
    """Fails the test if the browser console logged an error; tests may allow expected ones."""
    allowed: list[Callable[[str], bool]] = []
    browser.console_errors()  # drop anything left over
    yield allowed.append
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        browser.screenshot(f"FAILED-{request.node.name}")
    errors = browser.console_errors(lambda m: any(a(m) for a in allowed))
    assert not errors, "browser console errors:\n" + "\n".join(errors)


def _post_detection(manager: Manager) -> None:
    """A `RULE_NAME` detection on the module's endpoint, counted by the dashboard's overview
    when this returns (what the rules, endpoint and dashboard pages show)."""

    def hits() -> int:
        ov = manager.admin("GET", "/console/api/overview", params={"hours": 24}).json()
        return sum(r["hits"] for r in ov["data"]["rules"] if r["name"] == RULE_NAME)

    before = hits()
    ack = manager.post_logs(_mimikatz_and_powershell(manager.hostname))
    assert ack.status_code == 200, ack.text
    wait_for(lambda: hits() > before, what="the detection in the overview")


def test_login_sets_a_secure_session(browser: Browser, manager: Manager, clean_console) -> None:
    sign_out(browser, manager)
    assert browser.wait_css("main h1").text == "Heron console"
    assert browser.css("#topbar").is_displayed() is False
    assert browser.active().get_attribute("name") == "api_key"  # focus starts in the key field
    browser.screenshot("01-login")
    field = browser.field("API key")
    field.send_keys("wrong-key")
    field.submit()
    browser.wait_text("main [role=alert]", "invalid API key")
    clean_console(lambda m: "/console/api/login" in m and "401" in m)
    field = browser.field("API key")
    field.clear()
    field.send_keys(manager.admin_key)
    field.submit()
    assert browser.wait_text("main h1", "Dashboard")
    cookies = {c["name"]: c for c in browser.driver.get_cookies()}
    session = cookies["__Host-heron-session"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    assert not cookies["__Host-heron-csrf"]["httpOnly"]
    assert "alice (admin)" in browser.css("#who").text
    # the key is not kept anywhere in the page or its storage
    assert manager.admin_key not in browser.driver.page_source
    assert browser.driver.execute_script("return localStorage.length + sessionStorage.length") == 0
    browser.screenshot("02-dashboard-empty")


def _mimikatz_and_powershell(
    hostname: str, *, folder: str = "", encoded: str = "SQBFAFgA"
) -> list[dict[str, Any]]:
    """A critical mimikatz detection (`RULE_NAME`) and a plain PowerShell event."""
    return [
        sysmon_event(
            hostname,
            image=f"C:\\Tools\\{folder}mimikatz.exe",
            command_line="mimikatz.exe privilege::debug sekurlsa::logonpasswords",
            signature=RULE_NAME,
            criticality=10,
        ),
        sysmon_event(
            hostname,
            image="C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            command_line=f"powershell.exe -enc {encoded}",
        ),
    ]


def test_live_detection_appears(browser: Browser, manager: Manager, clean_console) -> None:
    as_admin(browser, manager)
    browser.go("#/detections")
    browser.wait_text("#live-state", "connected")
    ack = manager.post_logs(_mimikatz_and_powershell(manager.hostname))
    assert ack.status_code == 200, ack.text
    row = browser.wait_css("tbody tr[data-live]", timeout=10)
    assert RULE_NAME in row.text and manager.hostname in row.text and "critical" in row.text
    assert len(browser.all("tbody tr[data-live]")) == 1  # the plain event is not a detection
    browser.screenshot("03-detections-live")


def test_search_with_query_language(browser: Browser, manager: Manager, clean_console) -> None:
    """Searches events of its own, so it passes alone and in any order. They are three days old:
    they stay out of the dashboard's last-24-hours count."""
    as_admin(browser, manager)
    tag = uuidlib.uuid4().hex[:12]
    events = _mimikatz_and_powershell(manager.hostname, folder=f"{tag}\\", encoded=tag)
    then = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    for event in events:
        event["Event"]["System"]["TimeCreated"]["SystemTime"] = then.isoformat()
    assert manager.post_logs(events).status_code == 200
    query, text = f"Image:*\\{tag}\\mimikatz.exe AND EventID:1", f"powershell.exe {tag}"

    def found(q: str) -> list[object]:
        res = manager.admin("GET", "/search", params={"q": q, "last": "7d"})
        return list(res.json()["data"]["events"])

    # the index makes new events searchable within seconds (later on a busy box)
    wait_for(lambda: found(query) and found(text), what="the test's events in the index")
    browser.go("#/search")
    from selenium.webdriver.support.ui import Select

    Select(browser.field("Time range")).select_by_value("7d")
    field = browser.field("Query")
    field.send_keys(query)
    field.submit()
    browser.wait_text("main p[aria-live]", "1 event(s) shown")
    rows = browser.all("main tbody tr")
    assert len(rows) == 1 and "mimikatz.exe" in rows[0].text and RULE_NAME in rows[0].text
    browser.button("Show", rows[0]).click()
    dialog = browser.wait_css("dialog[open]")
    assert "Event JSON" in dialog.text and "sekurlsa::logonpasswords" in dialog.text
    browser.screenshot("04-search-detail")
    from selenium.webdriver.common.keys import Keys

    browser.active().send_keys(Keys.ESCAPE)
    browser.wait(lambda d: not browser.all("dialog[open]"))
    field.clear()
    field.send_keys(text)
    field.submit()
    browser.wait(lambda d: "1 event(s) shown" in browser.css("main p[aria-live]").text)
    assert "powershell.exe" in browser.css("main tbody tr").text


SYSTEM_INFO = {
    "edr": {"version": "0.1.0"},
    "os": {
        "name": "windows",
        "build": "22631",
        "version": "23H2",
        "product": "Windows 11 Enterprise",
        "edition": "Enterprise",
    },
    "system": {"manufacturer": "LENOVO", "name": "ThinkPad T14", "virtual": False},
    "cpu": {"name": "Intel(R) Core(TM) i7-1185G7", "count": 8},
    "network": {"hostname": "WS-FINANCE-07", "addresses": ["10.20.0.17"]},
}


def _endpoint_row(browser: Browser, hostname: str) -> Any:
    """The endpoints table's row of `hostname` (other tests may have added endpoints)."""
    browser.wait_text("main tbody", hostname)
    return browser.wait(
        lambda d: next((r for r in browser.all("main tbody tr") if hostname in r.text), None)
    )


def test_run_a_command(browser: Browser, manager: Manager, clean_console) -> None:
    as_admin(browser, manager)
    _post_detection(manager)
    assert manager.post_system_info(SYSTEM_INFO).status_code == 200
    browser.go("#/endpoints")
    row = _endpoint_row(browser, manager.hostname)
    assert "finance" in row.text
    browser.wait(lambda d: "Windows 11 Enterprise, build 22631" in row.text)
    browser.css(f"button[aria-label='Run a command on {manager.hostname}']").click()
    line = browser.wait_css("dialog[open] input[name=command-line]")
    assert browser.active() == line
    line.send_keys("ls C:\\Users\\alice")
    browser.screenshot("05-command-dialog")
    line.submit()
    browser.wait(lambda d: not browser.all("dialog[open]"))
    browser.wait_text("#toasts", "Command queued")
    cmds = manager.admin("GET", f"/endpoints/{manager.endpoint_uuid}/commands").json()["data"]
    assert [(c["name"], c["args"]) for c in cmds] == [("ls", ["C:\\Users\\alice"])]
    assert cmds[0]["issuer"] == "alice"
    browser.go(f"#/endpoints/{manager.endpoint_uuid}")
    cmds_box = browser.wait_text("#ep-cmds + div", "ls C:\\Users\\alice")
    assert "queued" in cmds_box.text
    assert RULE_NAME in browser.css("section[aria-labelledby=ep-dets]").text
    facts = browser.css("section[aria-labelledby=ep-facts]").text
    assert "LENOVO ThinkPad T14" in facts and "0.1.0" in facts
    browser.screenshot("06-endpoint-detail")


def test_artifacts_download_and_ir_report(
    browser: Browser, manager: Manager, clean_console
) -> None:
    as_admin(browser, manager)
    guid, ehash = "{6d24c251-d7fe-40cf-8723-cea8ee2b33f1}", "ab" * 20
    report = {
        "processes": [{"pid": 4242, "image": "C:\\Tools\\mimikatz.exe"}],
        "modules": [],
        "drivers": [],
        "connections": [],
        "commands": [],
    }
    output = b"Volume in drive C has no label.\r\n"
    for name, data in (("report.json", json.dumps(report).encode()), ("dir-output.txt", output)):
        res = manager.upload_artifact(guid, ehash, name, data)
        assert res.status_code == 200, res.text
    browser.go(f"#/endpoints/{manager.endpoint_uuid}")
    arts = browser.wait_text("section[aria-labelledby=ep-arts]", "Download dir-output.txt")
    browser.button("Open report", arts).click()
    dialog = browser.wait_css("dialog[open]")
    assert "mimikatz.exe" in dialog.text and "4242" in dialog.text
    browser.screenshot("06b-ir-report")
    browser.button("Close", dialog).click()
    browser.wait(lambda d: not browser.all("dialog[open]"))
    browser.button("Download dir-output.txt", arts).click()
    target = browser.downloads / "dir-output.txt"
    browser.wait(lambda d: target.exists() and target.read_bytes() == output)


def test_edit_rule_with_compile_check(browser: Browser, manager: Manager, clean_console) -> None:
    as_admin(browser, manager)
    _post_detection(manager)
    browser.go("#/rules")
    editor = browser.field("Rule (Gene JSON)")
    set_value = "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));"
    browser.driver.execute_script(set_value, editor, json.dumps(GOOD_RULE, indent=2))
    browser.button("Check and save").click()
    browser.wait_text("#rule-status", "compiled and saved")
    listed = browser.wait_text("section[aria-labelledby=rules-list]", RULE_NAME)
    assert RULE_NAME in listed.text
    saved = manager.admin("GET", "/rules", params={"name": RULE_NAME}).json()["data"]
    assert [r["Name"] for r in saved] == [RULE_NAME]
    # the chart and the table count the detection posted above
    assert RULE_NAME in browser.css("section[aria-labelledby=rules-chart] svg").text
    browser.css(f"button[aria-label='Edit {RULE_NAME}']").click()
    assert browser.active().text.startswith("Edit rule")
    broken = dict(GOOD_RULE, Matches=["$img: Image ~= '(?i:mimikatz'"])  # unclosed group
    browser.driver.execute_script(set_value, editor, json.dumps(broken))
    browser.button("Check and save").click()
    browser.wait_text("#rule-status", "Rejected")
    clean_console(lambda m: "/rules" in m and ("400" in m or "422" in m or "409" in m))
    assert "missing closing )" in browser.css("#rule-status").text
    assert (
        manager.admin("GET", "/rules", params={"name": RULE_NAME}).json()["data"][0]["Matches"]
        == GOOD_RULE["Matches"]
    )
    browser.screenshot("07-rules")


def test_suppressions_and_noisiest_rules(browser: Browser, manager: Manager, clean_console) -> None:
    as_admin(browser, manager)
    _post_detection(manager)
    browser.go("#/rules")
    browser.wait_text("section[aria-labelledby=rules-noisy]", RULE_NAME)
    browser.field("Rule (name, or * for every rule)").send_keys(RULE_NAME)
    browser.field("Image starts with").send_keys("C:\\Tools\\")
    browser.field("Host group (empty: every endpoint)").send_keys("lab")
    browser.button("Add suppression").click()
    box = browser.wait_text("section[aria-labelledby=rules-sup]", "image_prefix=C:\\Tools\\")
    (sup,) = manager.admin("GET", "/suppressions").json()["data"]
    assert (sup["rule"], sup["image_prefix"], sup["group"]) == (RULE_NAME, "C:\\Tools\\", "lab")
    browser.screenshot("07b-suppressions")
    browser.css(f"button[aria-label='Delete suppression {sup['id']}']").click()
    dialog = browser.wait_css("dialog[open]")
    browser.button("Delete", dialog).click()
    browser.wait(lambda d: "image_prefix=" not in box.text)
    assert manager.admin("GET", "/suppressions").json()["data"] == []
    from agent.link.health import health_event  # what the agent link sends (event 9010)

    counters = {
        "sources": {
            "linux-proc": {
                "events": 900,
                "lost": 37,
                "shed": 5,
                "drops": 0,
                "incomplete": 2,
                "degraded": 120,
            }
        },
        "actions": {"dropped_actions": {"report": 3}, "skipped": {}, "budget": {}},
        "suppressed": {RULE_NAME: 4},
        "queue": {"disk_state": "full", "disk_dropped": 6},
    }
    res = manager.post_logs(
        [health_event(9010, "agent counters", manager.hostname, Counters=json.dumps(counters))]
    )
    assert res.status_code == 200, res.text
    browser.go(f"#/endpoints/{manager.endpoint_uuid}")
    health = browser.wait_text("section[aria-labelledby=ep-health]", "linux-proc")
    assert "37" in health.text and "report: 3" in health.text and "disk full, 6" in health.text
    browser.screenshot("06c-agent-health")


def test_misp_settings(browser: Browser, manager: Manager, clean_console) -> None:
    if manager.admin("GET", "/misp/status").status_code == 404:
        pytest.skip("the MISP routes are not mounted on the admin app (appliance.misp not wired)")
    as_admin(browser, manager)
    # no key stored yet (another test may have saved one): the form below stores it
    res = manager.admin("PUT", "/misp/settings", json={"api_key": ""})
    assert res.status_code == 200 and res.json()["data"]["api_key_set"] is False, res.text
    browser.go("#/misp")
    url = browser.field("MISP URL")
    url.clear()
    url.send_keys("https://misp.lab.invalid")
    browser.field("API key").send_keys("a" * 40)
    browser.button("Save settings").click()
    browser.wait_text("main form [role=status]", "Settings saved")
    settings = manager.admin("GET", "/misp/settings").json()["data"]
    assert settings["url"] == "https://misp.lab.invalid" and settings["api_key_set"] is True
    browser.go("#/dashboard")
    browser.go("#/misp")
    assert browser.field("MISP URL").get_attribute("value") == "https://misp.lab.invalid"
    assert browser.all("label")  # labels render
    assert any("a key is stored" in lab.text for lab in browser.all("label"))
    browser.screenshot("08-misp")


def test_misp_status_shows_streams_permissions_backfill_and_dead_letters(
    browser: Browser, manager: Manager, clean_console
) -> None:
    from tests.fakemisp import DEFAULT_KEY, FakeMisp

    as_admin(browser, manager)
    with FakeMisp() as fake:
        res = manager.admin(
            "PUT",
            "/misp/settings",
            json={"enabled": True, "url": fake.url, "api_key": DEFAULT_KEY, "read_timeout": 30.0},
        )
        assert res.status_code == 200, res.text
        try:
            browser.go("#/misp")
            browser.button("Sync now").click()
            browser.wait_text("table.misp-streams", "IoC pull", timeout=30)
            browser.wait_text("ul.misp-perms", "perm_publish: no", timeout=30)
            table = browser.wait_css("table.misp-streams").text
            assert "Sightings" in table and "Reports" in table
            assert "Report backfill" in browser.wait_css(".misp-overview").text
            browser.wait_text("#misp-dead", "Dead letters")
            browser.wait_text("main", "No dead letters.")
            browser.driver.execute_script("document.getElementById('misp-status').scrollIntoView()")
            browser.screenshot("08b-misp-status")
        finally:
            manager.admin("PUT", "/misp/settings", json={"enabled": False})


def test_iocs_add_and_delete(browser: Browser, manager: Manager, clean_console) -> None:
    from selenium.webdriver.support.ui import Select

    as_admin(browser, manager)
    browser.go("#/iocs")
    Select(browser.field("Type")).select_by_value("domain")
    browser.field("Value").send_keys("c2.evil-corp.invalid")
    source = browser.field("Source")
    source.clear()
    source.send_keys("console-test")
    browser.button("Add IoC").click()
    browser.wait_text("main table", "c2.evil-corp.invalid")
    iocs = manager.admin("GET", "/iocs").json()["data"]
    assert [(i["type"], i["value"], i["source"]) for i in iocs] == [
        ("domain", "c2.evil-corp.invalid", "console-test")
    ]
    browser.screenshot("08b-iocs")
    browser.css("button[aria-label='Delete domain c2.evil-corp.invalid']").click()
    dialog = browser.wait_css("dialog[open]")
    assert browser.active().text == "Cancel"  # the safe choice has focus
    browser.button("Delete", dialog).click()
    browser.wait(lambda d: "c2.evil-corp.invalid" not in browser.css("main table").text)
    assert manager.admin("GET", "/iocs").json()["data"] == []


def test_users_and_api_keys(browser: Browser, manager: Manager, clean_console) -> None:
    from selenium.webdriver.support.ui import Select

    as_admin(browser, manager)
    browser.go("#/users")
    browser.field("Identifier").send_keys("carol")
    Select(browser.field("Role")).select_by_value("analyst")
    browser.button("Create user").click()
    key = browser.wait_css("dialog[open] #new-api-key").text
    assert len(key) > 30
    browser.screenshot("08c-user-key")
    browser.button("Done").click()
    browser.wait_text("main table", "carol")
    headers = {"X-Api-Key": key}
    assert manager.admin("GET", "/endpoints", headers=headers).status_code == 200
    browser.css("button[aria-label='New key for carol']").click()
    browser.button("Replace key", browser.wait_css("dialog[open]")).click()
    new_key = browser.wait_css("dialog[open] #new-api-key").text
    browser.button("Done").click()
    assert new_key != key
    assert manager.admin("GET", "/endpoints", headers=headers).status_code == 401
    assert manager.admin("GET", "/endpoints", headers={"X-Api-Key": new_key}).status_code == 200
    clean_console(lambda m: False)


def test_dashboard_charts(browser: Browser, manager: Manager, clean_console) -> None:
    as_admin(browser, manager)
    _post_detection(manager)  # the endpoint posted logs: online
    total = manager.admin("GET", "/console/api/overview", params={"hours": 24}).json()["data"]
    endpoints = manager.admin("GET", "/endpoints").json()["data"]
    browser.go("#/dashboard")
    time_chart = browser.wait_css("section[aria-labelledby=dash-time] svg[role=img]")
    assert f": {total['total']} in total" in time_chart.get_attribute("aria-label")
    assert RULE_NAME in browser.css("section[aria-labelledby=dash-rules] svg").text
    online = browser.css(".cards .card .value").text  # "online / endpoints"
    assert int(online.split(" / ")[0]) >= 1 and online.endswith(f" / {len(endpoints)}")
    browser.screenshot("09-dashboard")


def test_keyboard_only_navigation(browser: Browser, manager: Manager, clean_console) -> None:
    from selenium.webdriver.common.keys import Keys

    as_admin(browser, manager)
    browser.driver.get(manager.admin_url + "/console/#/dashboard")
    browser.driver.refresh()  # a real page load, not a hash change
    browser.wait_text("main h1", "Dashboard")
    browser.css("body").send_keys(Keys.TAB)  # a fresh page: the skip link comes first
    first = browser.active()
    assert first.text == "Skip to content"
    first.send_keys(Keys.ENTER)
    assert browser.active().get_attribute("id") == "main"
    # backwards from the content: the top bar, in reverse order, each with a visible focus ring
    seen = []
    for _ in range(16):
        browser.active().send_keys(Keys.SHIFT, Keys.TAB)
        el = browser.active()
        seen.append(el.text)
        outline = browser.driver.execute_script(
            "const s = getComputedStyle(arguments[0]);"
            "return s.outlineStyle + ' ' + s.outlineWidth;",
            el,
        )
        assert not outline.startswith("none"), f"no visible focus on {el.text!r}: {outline}"
        if el.text == "Skip to content":
            break
    assert seen == [
        "Log out",
        "Admin",
        "Users & keys",
        "MISP",
        "IoCs",
        "Rules",
        "Hunting",
        "Search",
        "ATT&CK",
        "Detections",
        "Endpoints",
        "Dashboard",
        "Skip to content",
    ]
    for _ in range(2):
        browser.active().send_keys(Keys.TAB)
    assert browser.active().text == "Endpoints"
    # open a page and an action with the keyboard alone
    browser.active().send_keys(Keys.ENTER)
    browser.wait_text("main h1", "Endpoints")
    browser.wait(lambda d: browser.active().tag_name == "h1")
    for _ in range(30):
        browser.active().send_keys(Keys.TAB)
        if (browser.active().get_attribute("aria-label") or "").startswith("Run a command"):
            break
    else:
        pytest.fail("the Command button cannot be reached with Tab")
    browser.active().send_keys(Keys.ENTER)
    line = browser.wait_css("dialog[open] input[name=command-line]")
    assert browser.active() == line
    browser.active().send_keys(Keys.ESCAPE)
    browser.wait(lambda d: not browser.all("dialog[open]"))
    # every control on every page has a label or an accessible name
    for route in (
        "#/dashboard",
        "#/endpoints",
        "#/detections",
        "#/search",
        "#/rules",
        "#/iocs",
        "#/misp",
        "#/users",
        f"#/endpoints/{manager.endpoint_uuid}",
    ):
        browser.go(route)
        unlabeled = browser.driver.execute_script("""
            const sel = 'main input, main select, main textarea, main button, main a';
            return [...document.querySelectorAll(sel)]
              .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                            && !(el.textContent || '').trim())
              .map(el => el.outerHTML.slice(0, 80));""")
        assert not unlabeled, f"{route}: controls without a name: {unlabeled}"
        mouse_only = browser.driver.execute_script(
            "return document.querySelectorAll('main [onclick]:not(button):not(a)').length"
        )
        assert mouse_only == 0
    browser.screenshot("10-keyboard-endpoints")


def test_attack_rule_state_and_offline_bundle(
    browser: Browser, manager: Manager, clean_console
) -> None:
    """ATT&CK of a detection, the endpoint's reported rule state, and a bundle minted from the
    endpoints page while the manager runs (issue 15)."""
    as_admin(browser, manager)
    det = sysmon_event(
        manager.hostname,
        image="C:\\Windows\\System32\\rundll32.exe",
        command_line="rundll32.exe comsvcs.dll, MiniDump 624 C:\\t\\l.dmp full",
        signature="HeronTest-LsassDump",
        criticality=9,
    )
    det["Event"]["Detection"]["ATTACK"] = [
        {"ID": "T1003.001", "Tactic": "credential-access", "Description": "", "Reference": ""}
    ]
    state = sysmon_event(manager.hostname, image="-", command_line="-")
    state["Event"]["System"].update({"Channel": "Heron-Agent", "EventID": 9011})
    state["Event"]["EventData"] = {
        "RuleCount": "0",
        "RulesSha256": "",
        "RulesSource": "local",
        "RulesUpdated": "2026-01-01T00:00:00.000000Z",
    }
    assert manager.post_logs([state, det]).status_code == 200
    browser.go("#/endpoints")
    browser.wait_text("main table", "0 rules, no-rules")
    before = len(manager.ctx.store.endpoints.list())
    browser.driver.find_element("xpath", "//button[text()='Offline enrollment bundle']").click()
    browser.wait_text("[role=status], .toast, body", "holds a private key")
    assert len(manager.ctx.store.endpoints.list()) == before + 1
    browser.screenshot("20-endpoints-rules-bundle")


def test_rule_packs_disable_and_versions(browser: Browser, manager: Manager, clean_console) -> None:
    from appliance.services.content import DEFAULTS_DIR

    as_admin(browser, manager)
    # imported here: the test does not rely on first-start seeding
    pack = [json.loads(line) for line in (DEFAULTS_DIR / "windows.gen").read_text().splitlines()]
    manager.ctx.content.import_rules_pack(
        "windows", pack, source="windows.gen", version="t", licence="GPL-3.0-or-later"
    )
    sha = manager.ctx.content.rules_text()[1]
    browser.go("#/rules")
    packs = browser.wait_text("section[aria-labelledby=rules-packs]", "windows")
    assert "GPL-3.0-or-later" in packs.text
    browser.css("button[aria-label='Disable pack windows']").click()
    browser.wait_text("section[aria-labelledby=rules-packs]", "0 / 28")
    assert manager.ctx.content.rules_text()[1] != sha
    versions = browser.wait_text("section[aria-labelledby=rules-versions]", "Roll back")
    assert "newest first" in versions.text
    browser.screenshot("21-rule-packs")


def test_contain_then_revoke_endpoint(
    browser: Browser, manager: Manager, clean_console, tmp_path: Path
) -> None:
    # an endpoint of its own: the module's endpoint stays enrolled for the other tests
    manager = manager.another_endpoint(tmp_path, "WS-FINANCE-99")
    as_admin(browser, manager)
    browser.go("#/endpoints")
    browser.wait_css(f"button[aria-label='Contain {manager.hostname}']").click()
    browser.button("Contain", browser.wait_css("dialog[open]")).click()
    browser.wait_text("#toasts", "Containment queued")
    cmds = manager.admin("GET", f"/endpoints/{manager.endpoint_uuid}/commands").json()["data"]
    assert "contain" in [c["name"] for c in cmds]  # the agent's built-in contain command
    browser.wait_css(f"button[aria-label='Revoke {manager.hostname}']").click()
    browser.button("Revoke", browser.wait_css("dialog[open]")).click()
    browser.wait_text("#toasts", "revoked")
    browser.wait_text("main tbody", "revoked")
    ep = manager.admin("GET", f"/endpoints/{manager.endpoint_uuid}").json()["data"]
    assert ep["status"] == "revoked"
    with pytest.raises(requests.RequestException):
        res = manager.post_logs([sysmon_event(manager.hostname, image="x.exe", command_line="x")])
        res.raise_for_status()
    assert (
        browser.css(f"button[aria-label='Revoke {manager.hostname}']").get_attribute("disabled")
        is not None
    )
    browser.screenshot("12-revoked")


def test_analyst_sees_read_only_console(browser: Browser, manager: Manager, clean_console) -> None:
    sign_out(browser, manager)
    key = browser.wait_css("input[name=api_key]")
    assert not [c for c in browser.driver.get_cookies() if c["name"] == "__Host-heron-session"]
    key.send_keys(manager.analyst_key)
    key.submit()
    browser.wait_text("main h1", "Dashboard")
    assert "bob (analyst)" in browser.css("#who").text
    assert not browser.css("#nav a[href='#/users']").is_displayed()
    browser.go("#/endpoints")
    button = browser.wait_css(f"button[aria-label='Run a command on {manager.hostname}']")
    assert button.get_attribute("disabled") is not None
    browser.go("#/users")
    assert browser.heading() == "Admins only"
    browser.screenshot("11-analyst")
