"""The console in a real browser: headless Chromium (Debian's, driven by Selenium through
Debian's chromedriver; Selenium Manager never runs) against a real ``hookledger web`` process,
on SQLite and PostgreSQL with a real Redis, and a real ``hookledger worker --burst``.

An ops person logs in with the admin token, opens the dead letters, finds the event, clicks
Replay, a worker runs, and the event page shows it processed, with the replay recorded.

Without /usr/bin/chromium this skips, except under ``CI=true``, where it fails: CI must run it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.console.helpers import break_orders, heal, work_until_dead
from tests.processes import spawn, stop, wait_until, web_server
from tests.support import ADMIN_TOKEN, body_of, event, htx_headers, htx_update

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture
def browser() -> Iterator[object]:
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        missing = "chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver)"
        if IN_CI:
            pytest.fail(f"{missing}; CI must run the browser test", pytrace=False)
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Selenium logs each WebDriver command with its arguments at DEBUG, typed text included
    # (the admin token): keep it out of every log whatever the level configured.
    selenium_log = logging.getLogger("selenium")
    level = selenium_log.level
    selenium_log.setLevel(logging.WARNING)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        selenium_log.setLevel(level)


def _screenshot(driver, path: Path) -> Path:
    assert driver.save_screenshot(str(path))
    print(f"console screenshot: {path}")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000, f"{path} is only {path.stat().st_size} bytes"
    return path


def test_replay_a_dead_letter_in_a_real_browser(browser, env, runtime, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 20)
    web_env = {**env, "HOOKLEDGER_ADMIN_TOKEN": ADMIN_TOKEN}
    break_orders(runtime.engine)  # every attempt fails until healed: a poison message
    try:
        with web_server(web_env, workers=1) as base:
            body = body_of(htx_update(4242, "filled", "0.5", "21000", "0.0005"))
            posted = httpx.post(f"{base}/hooks/htx-main", content=body, headers=htx_headers(body))
            assert posted.status_code == 200, posted.text
            event_id = posted.json()["event_id"]
            work_until_dead(runtime)
            assert event(runtime.engine, event_id).status == "dead"
            heal(runtime.engine)

            # Any console page without a session leads to the login form.
            driver.get(f"{base}/console/dead-letters")
            assert "/console/login" in driver.current_url
            driver.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
            driver.find_element(By.ID, "name").send_keys("selenium")
            driver.find_element(By.ID, "login").click()
            wait.until(ec.url_to_be(f"{base}/console/dead-letters"))
            assert "console:selenium" in driver.find_element(By.CLASS_NAME, "actor").text

            row = driver.find_element(By.ID, f"row-{event_id}")
            assert "orders are broken" in row.text
            assert "dead" in row.text
            _screenshot(driver, tmp_path / "dead-letters.png")
            row.find_element(By.CSS_SELECTOR, "button.replay").click()
            wait.until(ec.staleness_of(row))  # the POST answered and the list reloaded

            flash = wait.until(
                ec.visibility_of_element_located((By.CSS_SELECTOR, "p.flash-ok"))
            ).text
            assert f"{event_id}: requeued" in flash
            assert not driver.find_elements(By.ID, f"row-{event_id}")

            worker = spawn(["worker", "--burst"], web_env)
            try:
                # A condition, with a generous bound: a busy machine may be slow to start it.
                wait_until(
                    lambda: event(runtime.engine, event_id).status == "processed",
                    240,
                    "the burst worker to apply the replayed event",
                )
                assert worker.wait(timeout=240) == 0
            finally:
                stop(worker)

            driver.get(f"{base}/console/events/{event_id}")
            driver.refresh()
            status = wait.until(ec.presence_of_element_located((By.ID, "event-status")))
            assert status.text == "processed"
            actions = driver.find_element(By.ID, "actions").text
            assert "replay requeued console:selenium" in actions
            effects = driver.find_element(By.ID, "effects").text
            assert "1001 BTC 0.5" in effects
            assert ADMIN_TOKEN not in driver.page_source
            _screenshot(driver, tmp_path / "console.png")
    finally:
        heal(runtime.engine)
    assert event(runtime.engine, event_id).status == "processed"
