"""Open an HDF file in MITRE Heimdall Lite, as an assessor would, and read what it shows.

Heimdall Lite's static build (npm ``@mitre/heimdall-lite``, installed in tools/node by tasks.py)
is served from 127.0.0.1 by a Python http.server thread and opened in Debian's headless
``chromium`` through Debian's ``chromedriver`` with selenium; the file goes in through its
"Local Files" upload input. Nothing leaves loopback: the driver and browser paths are given
(Selenium Manager, which would download a driver, is made to fail if anything calls it) and
chromium resolves every host name but 127.0.0.1 to "not found" (Heimdall Lite asks
api.github.com for its newest release; that request fails at once).
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "tools/node/node_modules/@mitre/heimdall-lite/dist"
CHROMEDRIVER = "/usr/bin/chromedriver"
ROWS = """return Array.from(document.querySelectorAll('[data-cy=controlRow]')).map(row => {
  const id = row.querySelector('.v-card__text.title');
  const status = row.querySelector('[class*=status]');
  return [id ? id.innerText.trim() : null, status ? status.innerText.trim() : null];
}).filter(r => r[0]);"""


@dataclass(frozen=True)
class HeimdallView:
    rows: list[tuple[str, str]]  # (control id, the status Heimdall shows: Passed, Failed, Not Reviewed, ...)
    viewed: str  # Heimdall's own count line, e.g. "0/16 Controls Viewed"
    browser_log: list[str]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _served(directory: Path) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _no_selenium_manager(*_: object, **__: object) -> None:
    raise AssertionError("selenium tried Selenium Manager (a driver download): the system chromedriver must be used")


def open_in_heimdall(hdf: Path, screenshot: Path | None = None, timeout: float = 90) -> HeimdallView:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common import selenium_manager
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    assert (DIST / "index.html").is_file(), "Heimdall Lite is not installed: tasks.py install runs npm ci in tools/node"
    browser = shutil.which("chromium")
    assert browser, "Debian's chromium is not installed (tasks.py install puts it in APT_PACKAGES)"
    assert Path(CHROMEDRIVER).is_file(), "Debian's chromium-driver is not installed (tasks.py APT_PACKAGES)"
    selenium_manager.SeleniumManager.binary_paths = _no_selenium_manager  # type: ignore[method-assign]
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--window-size=1600,1400", "--disable-background-networking", "--disable-component-update",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with _served(DIST) as url:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            driver.get(url)
            wait = WebDriverWait(driver, timeout)
            upload = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=file]"))[0]
            upload.send_keys(str(hdf.resolve()))
            wait.until(lambda d: "Controls Viewed" in d.find_element(By.TAG_NAME, "body").text)
            driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
            seen: list[list[str]] = []

            def settled(d: webdriver.Chrome) -> bool:  # the same rows twice in a row: rendering is done
                rows = d.execute_script(ROWS)
                done = bool(rows) and rows == seen
                seen[:] = rows
                return done

            wait.until(settled)
            body = driver.find_element(By.TAG_NAME, "body").text
            viewed = next((line for line in body.splitlines() if "Controls Viewed" in line), "")
            if screenshot is not None:
                driver.execute_script("window.scrollTo(0, 0)")
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(screenshot))
            log = [entry.get("message", "") for entry in driver.get_log("browser")]
        finally:
            driver.quit()
    return HeimdallView([(i, st) for i, st in seen], viewed, log)
