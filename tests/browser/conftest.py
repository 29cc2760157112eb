"""Headless Chromium for the browser tests: Debian's chromium driven through its chromedriver.

Never a downloaded browser: `scripts/ensure-chromium` (run by `make test` and `.ci/run`) installs
the Debian packages when they are missing. Each test saves a screenshot of every page it visits
under tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.accounts import PASSWORD

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
# Without the background-networking flags Chromium keeps calling Google's hosts, which this
# machine's closed network refuses; a fresh profile keeps runs independent.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--window-size=1600,1000",
    "--lang=en-US",
)


@pytest.fixture(scope="session")
def chromium(django_db_setup, live_server) -> Iterator[WebDriver]:
    """One headless Chromium for the session (a new profile in a temporary directory).

    It depends on the test database and the live server so that it quits before either goes:
    its keep-alive connections hold live-server threads, each with a database connection, which
    would keep the test database from being dropped.
    """
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run scripts/ensure-chromium (make test does)")
    profile = tempfile.mkdtemp(prefix="syndicator-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Browser:
    """A page driver for one test: log in, open pages, wait, and screenshot every visited page."""

    def __init__(self, driver: WebDriver, base_url: str, test_name: str) -> None:
        self.driver = driver
        self.base_url = base_url
        self.prefix = re.sub(r"[^\w-]+", "_", test_name)
        self.shots = 0
        self.saved: list[Path] = []

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def login(self, username: str) -> None:
        self.driver.delete_all_cookies()
        self.open("/admin/login/")
        self.find("#id_username").send_keys(username)
        self.find("#id_password").send_keys(PASSWORD)
        self.find("input[type=submit]").click()
        self.wait_for(lambda d: "/admin/login/" not in d.current_url, "the login to finish")

    def find(self, css: str):  # -> WebElement
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait_for(self, condition, what: str, timeout: float = 20.0):
        return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(
            condition, message=f"waited {timeout} s for {what}"
        )

    def screenshot(self, name: str, show: str = "") -> Path:
        """Save the visible page as tests/artifacts/<test>-<n>-<name>.png, scrolled to ``show``."""
        ARTIFACTS.mkdir(exist_ok=True)
        if show:
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", self.find(show))
        self.shots += 1
        path = ARTIFACTS / f"{self.prefix}-{self.shots:02d}-{name}.png"
        assert self.driver.save_screenshot(str(path)), f"no screenshot saved at {path}"
        self.saved.append(path)
        return path


@pytest.fixture
def browser(chromium: WebDriver, live_server, request) -> Iterator[Browser]:
    """The session's Chromium, logged out, pointed at this test's live server."""
    chromium.delete_all_cookies()
    page = Browser(chromium, live_server.url, request.node.name)
    yield page
    chromium.delete_all_cookies()
    for path in page.saved:  # a screenshot that is not a PNG would be a broken artifact
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
