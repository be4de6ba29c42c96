"""A real browser: `streamlit run` on localhost, headless Chromium changes the batch size and the
headline number becomes the API's value for it. Skips only when no Chromium is installed.

Set ROOFSIM_SCREENSHOT=PATH to also keep the screenshot (the README's image is made this way).
"""

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

from apphelpers import ROOT
from app.fmt import seconds
from simulator import predict

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000


def find_chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = free_port()
    log = open(tmp_path / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/Home.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal"],
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
                log.flush()
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


def test_changing_batch_updates_the_headline(server, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium found (/usr/bin/chromium); `make test` installs Debian's chromium when run as root")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extras")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, timeout=TIMEOUT_MS)
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
