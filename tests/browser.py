"""Headless Chromium through Selenium and Debian's chromium-driver, for the page tests (skip when absent)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


def chrome(tmp_path: Path):
    """A headless Chromium WebDriver (skips the test with the reason when Selenium or the driver is missing)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install '.[test]')")
    driver_path = shutil.which("chromedriver")
    if not CHROMIUM.is_file() or driver_path is None:
        pytest.skip("headless Chromium + chromedriver not installed (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--window-size=1400,1100",
                "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=opts)


def severe_logs(driver) -> list[str]:
    """Console messages of level SEVERE (errors), as text."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
