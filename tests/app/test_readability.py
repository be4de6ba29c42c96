"""Explorer readability: log axes labelled in units a person reads, Compare bars named by what differs,
Calibration tables with units, enough digits and no empty cells, and the Sweep caption's batch limit
taken from the user's own values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from apphelpers import assert_clean, run
from simulator import Scenario, predict, sweep


def figures(at) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def tick_texts(layout: dict, prefix: str) -> list[list[str]]:
    return [axis["ticktext"] for name, axis in layout.items() if name.startswith(prefix) and "ticktext" in axis]


def assert_readable(texts: list[str]) -> None:
    assert texts and not any("e+" in t or "e-" in t for t in texts), texts


def test_long_context_axes_read_in_tokens_seconds_and_users():
    at = run("long_context")
    assert_clean(at)
    layout = figures(at)[0]["layout"]
    x = tick_texts(layout, "xaxis")
    assert len(x) == 4 and x[0][0] == "1K" and x[0][-1] == "1M" and all(t[-1] in "KM" for t in x[0])
    y = tick_texts(layout, "yaxis")
    assert len(y) == 4
    for texts in (y[0], y[2], y[3]):  # prefill, decode step, context switch: times
        assert_readable(texts)
        assert all(t.endswith((" s", " ms", " us")) for t in texts), texts
    assert_readable(y[1])  # users


def test_sweep_axes_read_in_batch_sizes_and_seconds():
    at = run("sweep")
    assert_clean(at)
    sweep_layout = figures(at)[0]["layout"]
    assert sweep_layout["xaxis"]["tickvals"] == [float(2 ** k) for k in range(0, 9)]
    assert_readable(sweep_layout["xaxis"]["ticktext"])
    assert all(t.endswith((" s", " ms", " us")) for t in sweep_layout["yaxis"]["ticktext"])
    tl = figures(at)[1]["layout"]
    assert all(t.endswith(" ms") for t in tl["xaxis"]["ticktext"]) and tl["xaxis"]["type"] == "log"
    assert_readable(tl["yaxis"]["ticktext"])


def test_compare_bars_are_named_by_what_differs():
    at = run("compare", {"cmp": json.dumps([{"precision.kv_cache": "fp8"}, {"hardware.gpu": "h200-sxm"}])})
    at.radio(key="w.cmp.n").set_value(3).run()
    assert_clean(at)
    bars = [fig["data"][0]["x"] for fig in figures(at)]
    assert bars[0] == bars[1] == ["A: the sidebar", "B: KV dtype fp8", "C: GPU h200-sxm"]


def test_calibration_tables_have_units_digits_and_no_empty_cells():
    at = run("calibration", {"calibration": "h100-sxm"})
    assert_clean(at)
    frames = [df.value for df in at.dataframe]
    assert len(frames) >= 5
    for frame in frames:
        cells = frame.astype(str).to_numpy().ravel()
        assert not any(c in ("None", "nan", "NaN", "") for c in cells), frame.columns
    kernels = next(f for f in frames if "measured (us)" in f.columns)
    assert "predicted (us)" in kernels.columns and "error (%)" in kernels.columns
    differ = np.mean(kernels["measured (us)"] != kernels["predicted (us)"])
    assert differ > 0.9  # 4 significant digits tell measured from predicted (not 0.00002 against 0.00002)
    e2e = next(f for f in frames if "calibrated (ms)" in f.columns)
    assert e2e["time (ms)"].iloc[0] == f"{7.059456110000611:.4g}"  # the shipped result's first case, in ms


@pytest.mark.parametrize("values", ["1, 3, 50, 200, 1000", "2, 4"])
def test_sweep_caption_uses_the_users_batch_values(values):
    at = run("sweep", {"sw.x": "batch_size", "sw.xv": values})
    assert_clean(at)
    batches = [int(v) for v in values.split(",")]
    fits = sweep(Scenario(), batch_size=batches)["fits"].ravel()
    largest = max(b for b, f in zip(batches, fits) if f)
    caption = " ".join(c.value for c in at.caption)
    assert f"Batch {batches[0]} to {batches[-1]} (your batch values); the largest of these that fits in memory " \
           f"is {largest};" in caption


def test_sweep_caption_reaches_the_memory_limit_without_a_batch_axis():
    at = run("sweep", {"sw.x": "context_len", "sw.xv": "1024, 4096", "sw.y": "(none)"})
    assert_clean(at)
    limit = predict(Scenario()).max_concurrency
    caption = " ".join(c.value for c in at.caption)
    assert f"the largest of these that fits in memory is {limit}; at this context at most {limit} sequences fit" \
        in caption
