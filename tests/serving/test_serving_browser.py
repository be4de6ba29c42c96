"""The Serve page in a real browser: `streamlit run`, headless Chromium opens a shared URL, the
headline is the API's, and a changed setting lands in the URL. Skips only when no Chromium is installed."""

from __future__ import annotations


import pytest

from app.fmt import seconds
from simulator import serve

pytestmark = pytest.mark.browser
TIMEOUT_MS = 60_000


def test_serve_page_from_a_shared_url(server, chromium_launch):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extras")
    res = serve({}, {"rate": 6.0, "num_requests": 100, "prompt_len": "1024", "output_len": "256", "seed": 0},
                {"max_num_seqs": 256, "max_num_batched_tokens": 2048, "chunked_prefill": True, "slo_ttft_s": 0.5,
                 "slo_tpot_s": 0.05})
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(**chromium_launch, timeout=TIMEOUT_MS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{server}/Serve?sv.n=100&sv.rate=6&sv.rates=4%2C%208")
            ttft = (page.locator('[data-testid="stMetric"]').filter(has_text="TTFT p50")
                    .locator('[data-testid="stMetricValue"]'))
            sync_api.expect(ttft).to_have_text(f"{seconds(res.ttft_s.p50)} · {seconds(res.ttft_s.p99)}",
                                              timeout=TIMEOUT_MS)
            box = page.get_by_role("spinbutton", name="Requests", exact=True)
            box.fill("150")
            box.press("Enter")
            page.wait_for_function("() => location.search.includes('sv.n=150')", timeout=TIMEOUT_MS)
        finally:
            browser.close()
