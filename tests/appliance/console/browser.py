"""Headless Chromium for the console tests: Debian's chromium + chromedriver, driven by Selenium.

Never downloads a browser or a driver (explicit binary and driver paths, so Selenium Manager is not
consulted). The manager's self-signed test CA is trusted narrowly: Chromium gets the SPKI hash of
the test server's key (`--ignore-certificate-errors-spki-list`), not a blanket certificate bypass.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "console"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
]


def available() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


class Browser:
    """A Chromium session plus the checks every console test needs."""

    def __init__(self, *, spki_hash: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="heron-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in FLAGS:
            opts.add_argument(flag)
        opts.add_argument(f"--user-data-dir={self.profile}")
        opts.add_argument(f"--ignore-certificate-errors-spki-list={spki_hash}")
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.driver.set_page_load_timeout(20)
        self.downloads = Path(self.profile) / "downloads"
        self.downloads.mkdir()
        self.driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior",
            {"behavior": "allow", "downloadPath": str(self.downloads)},
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for stale in ARTIFACTS.glob("FAILED-*.png"):
            stale.unlink()

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # --- checks ---------------------------------------------------------------------------------

    def console_errors(self, allow: Callable[[str], bool] = lambda m: False) -> list[str]:
        """SEVERE browser-log entries since the last call (JS errors, failed loads, CSP)."""
        entries = self.driver.get_log("browser")
        bad = [e["message"] for e in entries if e["level"] == "SEVERE" and not allow(e["message"])]
        for e in entries:
            logger.debug("browser log: %s %s", e["level"], e["message"])
        return bad

    def screenshot(self, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    # --- helpers --------------------------------------------------------------------------------

    def wait(self, condition: Callable[[Any], Any], timeout: float = 10.0) -> Any:
        from selenium.common.exceptions import (
            NoSuchElementException,
            StaleElementReferenceException,
        )
        from selenium.webdriver.support.ui import WebDriverWait

        ignored = (NoSuchElementException, StaleElementReferenceException)  # pages re-render
        return WebDriverWait(
            self.driver, timeout, poll_frequency=0.1, ignored_exceptions=ignored
        ).until(condition)

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def wait_css(self, selector: str, timeout: float = 10.0) -> Any:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec

        return self.wait(ec.visibility_of_element_located((By.CSS_SELECTOR, selector)), timeout)

    def wait_text(self, selector: str, text: str, timeout: float = 10.0) -> Any:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec

        self.wait(ec.text_to_be_present_in_element((By.CSS_SELECTOR, selector), text), timeout)
        return self.css(selector)

    def heading(self) -> str:
        return str(self.wait_css("main h1").text)

    def go(self, hash_route: str) -> None:
        """Navigate inside the single page (hash route) and wait for the page heading."""
        self.driver.execute_script(
            "if (window.location.hash === arguments[0])"
            "  window.dispatchEvent(new HashChangeEvent('hashchange'));"
            "else window.location.hash = arguments[0];",
            hash_route,
        )
        self.wait(lambda d: not self.all("main p.loading") and self.all("main h1"))

    def active(self) -> Any:
        return self.driver.switch_to.active_element

    def field(self, label: str) -> Any:
        """The form control labelled `label` in the visible page or dialog."""
        from selenium.webdriver.common.by import By

        lab = self.driver.find_element(By.XPATH, f"//label[normalize-space()='{label}']")
        return self.driver.find_element(By.ID, lab.get_attribute("for"))

    def button(self, text: str, scope: Any = None) -> Any:
        from selenium.webdriver.common.by import By

        root = scope or self.driver
        return root.find_element(By.XPATH, f".//button[normalize-space()='{text}']")
