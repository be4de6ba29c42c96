"""A real browser: `streamlit run` on localhost, headless Chromium changes the batch size and the
headline number becomes the API's value for it. Skips only when no Chromium is installed.

Set ROOFSIM_SCREENSHOT=PATH to also keep the screenshot (the README's image is made this way).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from app.fmt import seconds
from simulator import predict

pytestmark = pytest.mark.browser

TIMEOUT_MS = 30_000


def test_changing_batch_updates_the_headline(server, chromium_launch, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extras")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(**chromium_launch, timeout=TIMEOUT_MS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server)
            latency = (page.locator('[data-testid="stMetric"]').filter(has_text="Step latency")
                       .locator('[data-testid="stMetricValue"]'))
            sync_api.expect(latency).to_have_text(seconds(predict().latency_s), timeout=TIMEOUT_MS)

            expected = seconds(predict(**{"workload.batch_size": 64}).latency_s)
            assert expected != latency.inner_text()
            batch = page.get_by_role("spinbutton", name="Batch size", exact=True)
            batch.fill("64")
            batch.press("Enter")
            sync_api.expect(latency).to_have_text(expected, timeout=TIMEOUT_MS)
            page.wait_for_function("() => location.search.includes('workload.batch_size=64')", timeout=TIMEOUT_MS)
            batch.blur()
            page.locator('[data-testid="stSidebarContent"]').evaluate("e => e.scrollTo(0, 0)")
            page.locator(".js-plotly-plot").first.wait_for(state="visible")
            page.wait_for_timeout(500)  # let plotly finish drawing
            shot = tmp_path / "scenario.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000
            if os.environ.get("ROOFSIM_SCREENSHOT"):
                Path(os.environ["ROOFSIM_SCREENSHOT"]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(shot, os.environ["ROOFSIM_SCREENSHOT"])
        finally:
            browser.close()
