"""Headless Debian Chromium driven by Selenium, for the web page test and the README screenshot.

Only the system browser and driver are used (`chromium` and `chromium-driver` from apt): the
driver path is given to Selenium explicitly, so Selenium Manager never tries to download one.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

# Debian's paths; `shutil.which` also finds them elsewhere on PATH.
BROWSER_NAMES = ("chromium", "chromium-browser")
DRIVER_NAME = "chromedriver"


def find_chromium() -> tuple[str, str] | None:
    """(browser, driver) paths, or None when either is missing."""
    browser = next((path for name in BROWSER_NAMES if (path := shutil.which(name))), None)
    driver = shutil.which(DRIVER_NAME)
    if browser is None or driver is None:
        return None
    return browser, driver


def start_chromium(browser: str, driver: str, width: int, height: int) -> webdriver.Chrome:
    """A headless Chromium with a `width` x `height` CSS-pixel viewport (device pixel ratio 1)."""
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        # Containers and CI runners often run as root, where Chromium's sandbox cannot start.
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        "--autoplay-policy=no-user-gesture-required",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    chrome.set_script_timeout(30)
    # Headless windows are at least 500 px wide: a phone-sized viewport needs emulation.
    chrome.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )
    return chrome


def full_page_png(chrome: webdriver.Chrome, path: Path) -> Path:
    """Save the whole page, not only the viewport, as a PNG."""
    metrics = chrome.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    shot = chrome.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    return path
