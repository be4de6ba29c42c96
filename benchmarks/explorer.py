"""Re-render time of the explorer's Scenario page after one widget change (Streamlit AppTest, one
process; not a timed test). Median of 9 changes after two warm-up changes, batch 8 <-> 1.

Run: ``.venv/bin/python benchmarks/explorer.py``.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

HOME = Path(__file__).resolve().parents[1] / "app" / "Home.py"


def rerender_s(changes: int = 9) -> float:
    at = AppTest.from_file(str(HOME), default_timeout=60).run()
    widget = "w.workload.batch_size"
    for batch in (8, 1):  # warm the caches for both values
        at.number_input(key=widget).set_value(batch).run()
    times = []
    for i in range(changes):
        start = time.perf_counter()
        at.number_input(key=widget).set_value(8 if i % 2 == 0 else 1).run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    print(f"Scenario page re-render after a change: {rerender_s() * 1e3:.0f} ms (median)")
