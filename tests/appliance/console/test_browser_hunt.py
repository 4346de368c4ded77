"""Retro-hunt jobs in headless Chromium against a real manager: progress while a job runs, cancel,
the jobs list, and the matches of a finished job paged by cursor.

Own manager (20,000 stored events) and browser; each test sets the jobs' CPU share it needs (5 %
of a core: a job runs long enough to cancel), so it passes alone and in any order. Every test
asserts an empty browser console and saves a screenshot.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from appliance.services.hunting import Hunting
from appliance.services.huntjobs import HuntJobs, HuntLimits
from index import EndpointRef

from .browser import Browser, available
from .harness import Manager, logged_in_browser, start_manager, sysmon_event

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not available(), reason="Debian chromium/chromedriver not installed"),
]
EVENTS = 20_000


def _rule(name: str, image: str) -> dict[str, object]:
    return {
        "Name": name,
        "Tags": [],
        "Meta": {
            "Events": {"Microsoft-Windows-Sysmon/Operational": [1]},
            "Criticality": 5,
            "Schema": "2.0.0",
        },
        "Matches": [f"$i: Image ~= '(?i:{image})'"],
        "Condition": "$i",
    }


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    m = start_manager(tmp_path_factory.mktemp("hunt"))
    assert m.ctx.hunts is not None
    m.ctx.hunts.close()
    hunting = Hunting(m.ctx.events)
    m.ctx.hunts = HuntJobs(hunting, HuntLimits())
    ref = EndpointRef(m.endpoint_uuid, m.hostname, "10.0.0.7", "finance")
    for lo in range(0, EVENTS, 2000):
        batch = [
            sysmon_event(m.hostname, image=f"C:\\Tools\\tool{i % 97}.exe", command_line=f"t {i}")
            for i in range(lo, lo + 2000)
        ]
        m.ctx.events.append(batch, endpoint=ref, batch_id=f"fill-{lo}")
    m.ctx.events.flush()  # type: ignore[attr-defined]
    yield m
    m.close()


@pytest.fixture(scope="module")
def browser(manager: Manager) -> Iterator[Browser]:
    b = logged_in_browser(manager)
    yield b
    b.close()


def _run(browser: Browser, rule: dict[str, object]) -> None:
    area = browser.field("Gene rules (JSON object or list)")
    browser.driver.execute_script("arguments[0].value = arguments[1];", area, json.dumps(rule))
    browser.button("Run retro-hunt").click()


def test_a_running_job_shows_progress_and_is_cancelled(browser: Browser, manager: Manager) -> None:
    assert manager.ctx.hunts is not None
    manager.ctx.hunts.limits = HuntLimits(cpu_share=0.05)  # slow: it runs long enough to cancel
    browser.console_errors()
    browser.go("#/hunt")
    _run(browser, _rule("SlowHunt", "tool5\\.exe$"))
    browser.wait_text("#retro-status", "event(s) scanned", timeout=60)
    browser.wait(lambda d: int(browser.css("#retro-progress").get_attribute("value")) > 0, 60)
    assert "Hunting…" in browser.css("#retro-status").text
    assert "running" in browser.css("#retro-jobs table").text
    browser.screenshot("40-retro-hunt-running")
    browser.button("Cancel hunt").click()
    browser.wait_text("#retro-status", "(cancelled)", timeout=60)
    text = browser.css("#retro-status").text
    scanned = int(text.split(" in ")[1].split(" ")[0])
    assert 0 < scanned < EVENTS, text
    browser.wait_text("#retro-jobs table", "cancelled", timeout=30)
    browser.screenshot("41-retro-hunt-cancelled")
    assert not browser.console_errors()


def test_a_finished_job_lists_its_matches(browser: Browser, manager: Manager) -> None:
    assert manager.ctx.hunts is not None
    manager.ctx.hunts.limits = HuntLimits(cpu_share=1.0)  # the next job at full speed
    browser.console_errors()
    browser.go("#/hunt")
    _run(browser, _rule("Tool7", "tool7\\.exe$"))
    browser.wait_text("#retro-status", "match(es)", timeout=120)
    expected = len([i for i in range(EVENTS) if i % 97 == 7])
    assert (
        f"{expected} match(es) in {EVENTS} event(s) scanned." in browser.css("#retro-status").text
    )
    rows = browser.all("section[aria-labelledby=hunt-retro] > div:not(#retro-jobs) tbody tr")
    assert len(rows) == expected and "tool7.exe" in rows[0].text
    jobs = browser.css("#retro-jobs table").text  # the cancelled job is the other test's
    assert "done" in jobs and "Tool7" in jobs
    browser.screenshot("42-retro-hunt-jobs")
    assert not browser.console_errors()
