"""A real browser on the Plan page: `streamlit run` on localhost, headless Chromium changes the
request rate and the cheapest plan becomes the planner's answer for it. Skips when no Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from simulator import plan

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
TIMEOUT_MS = 60_000
REQUEST = dict(model="llama-3.1-70b", prompt_len=2048, output_len=256, slo_ttft_s=2.0, slo_tpot_s=0.05, percentile=90.0,
               gpus=["h100-sxm", "h200-sxm", "a100-80gb-sxm"], max_gpus=64, techniques=[], disaggregate=True, verify=0)


def _chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture
def server(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "streamlit.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app/Home.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("streamlit did not start:\n" + (tmp_path / "streamlit.log").read_text()[-2000:])
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def test_changing_the_rate_updates_the_cheapest_plan(server):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium found (/usr/bin/chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extras")
    first = plan({**REQUEST, "rate": 4.0}).cheapest
    second = plan({**REQUEST, "rate": 12.0}).cheapest
    assert first.usd_per_hour != second.usd_per_hour
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=ARGS, timeout=TIMEOUT_MS)
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
