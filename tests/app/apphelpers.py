"""Helpers for the explorer's tests: run a page with AppTest and read what it shows."""

from __future__ import annotations

import os
from pathlib import Path

from streamlit.testing.v1 import AppTest

from app.fmt import percent, rate, seconds, size

ROOT = Path(os.path.abspath(__file__)).parents[2]
PAGES = {
    "home": ROOT / "app" / "Home.py",
    "long_context": ROOT / "app" / "pages" / "1_Long_context.py",
    "sweep": ROOT / "app" / "pages" / "2_Sweep.py",
    "compare": ROOT / "app" / "pages" / "3_Compare.py",
    "calibration": ROOT / "app" / "pages" / "4_Calibration.py",
}
HF_CONFIGS = ROOT / "tests" / "data" / "hf_configs"
TEST_TECHNIQUE = "explorer-test-noop"


def page(name: str, params: dict[str, str] | None = None) -> AppTest:
    """An AppTest of one page, with URL query parameters, not yet run."""
    at = AppTest.from_file(str(PAGES[name]), default_timeout=60)
    for key, value in (params or {}).items():
        at.query_params[key] = value
    return at


def run(name: str, params: dict[str, str] | None = None) -> AppTest:
    return page(name, params).run()


def shown(at: AppTest) -> dict[str, str]:
    """Metric label -> the value the page shows."""
    return {m.label: m.value for m in at.metric}


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not errors(at), errors(at)


def expected_headline(p) -> dict[str, str]:
    """The headline metrics as the Scenario page must show them, formatted from ``predict``."""
    timing = ({"TTFT": seconds(p.ttft_s), "TPOT": seconds(p.tpot_s), "End-to-end": seconds(p.e2e_s)}
              if p.phase == "generate" else {"Step latency": seconds(p.latency_s)})
    return {**timing, "Throughput": rate(p.tokens_per_s), "Memory / GPU": size(p.memory.total_bytes),
            "Max concurrency": str(p.max_concurrency), "Bound": p.bound,
            "MFU · MBU": f"{percent(p.mfu)} · {percent(p.mbu)}"}
