"""A real browser on the Plan page: `streamlit run` on localhost, headless Chromium changes the
request rate and the cheapest plan becomes the planner's answer for it. Skips when no Chromium."""

from __future__ import annotations


import pytest

from simulator import plan

pytestmark = pytest.mark.browser
TIMEOUT_MS = 180_000  # the shared 2-core machine can be ten jobs deep
REQUEST = dict(model="llama-3.1-70b", prompt_len=2048, output_len=256, slo_ttft_s=2.0, slo_tpot_s=0.05, percentile=90.0,
               gpus=["h100-sxm", "h200-sxm", "a100-80gb-sxm"], max_gpus=64, techniques=[], disaggregate=True, verify=0)


def test_changing_the_rate_updates_the_cheapest_plan(server, chromium_launch):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extras")
    first = plan({**REQUEST, "rate": 4.0}).cheapest
    second = plan({**REQUEST, "rate": 12.0}).cheapest
    assert first.usd_per_hour != second.usd_per_hour
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(**chromium_launch, timeout=TIMEOUT_MS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{server}/Plan")
            value = (page.locator('[data-testid="stMetric"]').filter(has_text="Cheapest plan")
                     .locator('[data-testid="stMetricValue"]'))
            sync_api.expect(value).to_have_text(f"${first.usd_per_hour:,.2f}/h", timeout=TIMEOUT_MS)
            rate = page.get_by_role("spinbutton", name="Request rate (req/s)", exact=True)
            rate.fill("12")
            rate.press("Enter")
            sync_api.expect(value).to_have_text(f"${second.usd_per_hour:,.2f}/h", timeout=TIMEOUT_MS)
            page.wait_for_function("() => location.search.includes('pl.rate=12')", timeout=TIMEOUT_MS)
        finally:
            browser.close()
