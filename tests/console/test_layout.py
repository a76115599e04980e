"""The console's layout in a real browser at 1280x900 (headless Chromium, as test_browser.py
drives it): with a TRON deposit (a 64-hex-character txHash as the product code) and an HTX fill
posted through a real ``hookledger web`` and applied by a burst worker, the transactions page,
the event log and an event's page fit the width (no horizontal scrollbar), and every value
shortened to fit is whole in a ``title`` attribute (on hover) and in the page source.

Screenshots go to ``$HOOKLEDGER_SCREENSHOTS`` when set (else the test's temporary directory).
One database (SQLite) is enough: the layout does not depend on it.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.console.helpers import break_orders, heal, work_until_dead
from tests.console.test_browser import browser  # noqa: F401 - the fixture, shared
from tests.processes import web_server
from tests.support import (
    ADMIN_TOKEN,
    TRX_TOKEN,
    body_of,
    fixture_json,
    htx_headers,
    htx_update,
    run_jobs,
)

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 1280, 900


def _viewport(driver: object) -> None:
    """An exact 1280x900 layout viewport (a window size would include the browser's frame)."""
    driver.execute_cdp_cmd(  # type: ignore[attr-defined]
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )


def _fits(driver: object, name: str, shots: Path) -> None:
    driver.save_screenshot(str(shots / f"{name}.png"))  # type: ignore[attr-defined]
    inner = driver.execute_script("return window.innerWidth")  # type: ignore[attr-defined]
    assert inner == WIDTH
    wide = driver.execute_script(  # type: ignore[attr-defined]
        "return document.documentElement.scrollWidth"
    )
    assert wide <= WIDTH, f"{name}: the page is {wide} px wide at {WIDTH} px"
    scrolled = driver.execute_script(  # type: ignore[attr-defined]
        """return [...document.querySelectorAll('*')].filter(e => {
             const x = getComputedStyle(e).overflowX;
             return (x === 'auto' || x === 'scroll') && e.scrollWidth > e.clientWidth + 1;
           }).map(e => e.tagName.toLowerCase() + '.' + e.className)"""
    )
    assert scrolled == [], f"{name}: these scroll sideways at {WIDTH} px: {scrolled}"


@pytest.mark.sqlite_only
def test_pages_with_long_hashes_fit_1280_px(browser, env, runtime, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    shots = Path(os.environ.get("HOOKLEDGER_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    deposit = fixture_json("trx_deposit.json")
    tx_hash = deposit["txHash"]
    assert len(tx_hash) == 64
    with web_server({**env, "HOOKLEDGER_ADMIN_TOKEN": ADMIN_TOKEN}, workers=1) as base:
        posted = httpx.post(f"{base}/hooks/trx/{TRX_TOKEN}", json=deposit)
        assert posted.status_code == 200, posted.text
        deposit_id = posted.json()["event_id"]
        fill = body_of(htx_update(7070, "filled", "0.5", "21000", "0.0005"))
        posted = httpx.post(f"{base}/hooks/htx-main", content=fill, headers=htx_headers(fill))
        assert posted.status_code == 200, posted.text
        run_jobs(runtime)
        break_orders(runtime.engine)  # one more fill, dead: the dead letters show a row too
        try:
            dead = body_of(htx_update(7071, "filled", "0.25", "10500", "0.00025"))
            posted = httpx.post(f"{base}/hooks/htx-main", content=dead, headers=htx_headers(dead))
            assert posted.status_code == 200, posted.text
            work_until_dead(runtime)
        finally:
            heal(runtime.engine)

        _viewport(driver)
        driver.get(f"{base}/console/login")
        driver.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
        driver.find_element(By.ID, "name").send_keys("layout")
        driver.find_element(By.ID, "login").click()
        WebDriverWait(driver, 20).until(
            ec.presence_of_element_located((By.CLASS_NAME, "actor"))  # logged in
        )

        driver.get(f"{base}/console/ledger/transactions")
        _fits(driver, "transactions", shots)
        assert tx_hash in driver.page_source
        titled = driver.find_elements(By.CSS_SELECTOR, f'[title="{tx_hash}"]')
        assert titled, "the transactions page has no title attribute with the whole txHash"
        assert driver.find_elements(By.CSS_SELECTOR, f'[title="{deposit_id}"]')

        driver.get(f"{base}/console/events")
        _fits(driver, "events", shots)
        assert deposit_id in driver.find_element(By.ID, f"row-{deposit_id}").text  # whole

        driver.get(f"{base}/console/events/{deposit_id}")
        _fits(driver, "event", shots)
        assert driver.find_element(By.ID, "event-status").text == "processed"
        assert tx_hash in driver.find_element(By.ID, "idempotency-key").text  # whole, wrapped

        driver.get(f"{base}/console/dead-letters")
        _fits(driver, "dead-letters", shots)
        assert "orders are broken" in driver.find_element(By.CSS_SELECTOR, "td.error-text").text
        driver.get(f"{base}/console/ledger/balances")
        _fits(driver, "balances", shots)
