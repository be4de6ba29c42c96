"""Sweep: any output of the vectorised ``sweep`` against one or two axes (the GPU type among them), as
lines or a heatmap; and the throughput-latency curve over batch size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import charts, state, widgets
from hwmodels import DTYPES, list_accelerators
from hwmodels.errors import InputError
from simulator.bounds import AXIS_LIMITS, check_counts

st.set_page_config(page_title="roofsim · Sweep", layout="wide")
state.enter_page("sweep")

OUTPUTS = {
    "latency_s": "latency (s)", "tokens_per_s": "throughput (tokens/s)", "ttft_s": "TTFT (s)",
    "tpot_s": "TPOT (s)", "e2e_s": "end-to-end (s)", "total_bytes": "memory per GPU (bytes)",
    "kv_cache_bytes": "KV cache per GPU (bytes)", "max_concurrency": "max concurrency", "mfu": "MFU", "mbu": "MBU",
    "sm_time_s": "SM busy (s)", "hbm_time_s": "HBM busy (s)", "link_time_s": "link busy (s)",
    "overhead_s": "launch overhead (s)",
}
AXES = {"batch_size": "batch size", "context_len": "context tokens", "prompt_len": "prompt tokens",
        "output_len": "output tokens", "tp": "tensor parallel", "gpu": "GPU type", "weights": "weight dtype",
        "kv_cache": "KV dtype", "compute": "compute dtype"}
CATEGORICAL = ("gpu", "weights", "kv_cache", "compute")
NONE = "(none)"
GPU_DEFAULTS = ("h100-sxm", "h200-sxm", "b200", "a100-80gb-sxm", "mi300x")


def default_values(axis: str, sc: dict) -> str:
    n = int(sc["hardware"]["num_gpus"])
    return {
        "batch_size": "1, 2, 4, 8, 16, 32, 64, 128, 256", "context_len": "1024, 4096, 16384, 65536, 131072",
        "prompt_len": "256, 1024, 4096, 16384", "output_len": "64, 256, 1024, 4096",
        "tp": ", ".join(str(2 ** k) for k in range(8) if 2 ** k <= n),
        "gpu": ", ".join(g for g in GPU_DEFAULTS if g in list_accelerators()),
        "weights": "bf16, fp8, int4", "kv_cache": "bf16, fp8", "compute": "bf16, fp8",
    }[axis]


def parse(axis: str, text: str) -> list:
    items = [t for t in text.replace(";", ",").replace(" ", ",").split(",") if t.strip()]
    if not items:
        raise InputError(f"sweep.{axis}", "give at least one value")
    if axis == "gpu":
        return items
    if axis in CATEGORICAL:
        bad = [t for t in items if t not in DTYPES]
        if bad:
            raise InputError(f"sweep.{axis}", f"unknown dtype {bad[0]!r}; choose from {', '.join(DTYPES)}")
        return items
    try:
        numbers = [float(t) for t in items]
    except ValueError:
        raise InputError(f"sweep.{axis}", f"expected whole numbers, got {text!r}") from None
    values = check_counts(f"sweep.{axis}", numbers, *AXIS_LIMITS[axis])  # inf, 2.7, 1e30: refused
    return sorted({int(v) for v in values})


def grid(sc: dict, x: str, xv: list, y: str | None, yv: list) -> dict[str, np.ndarray]:
    """Outputs as (len(xv), len(yv)) arrays, from one ``sweep`` (the GPU type is one of its axes)."""
    axes = {x: xv, **({y: yv} if y else {})}
    out = state.cached_sweep(sc, **axes)
    return {k: np.asarray(v).reshape(len(xv), len(yv) if y else 1) for k, v in out.items()}


sc, problem = widgets.scenario_sidebar(sync=False)
st.title("Sweep")

for key, default in (("sw.x", "batch_size"), ("sw.y", "context_len"), ("sw.out", "latency_s"), ("sw.chart", "lines")):
    state.setting(f"w.{key}", key, default, str)
c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
out_key = c1.selectbox("Output", widgets.with_option(list(OUTPUTS), "w.sw.out"), key="w.sw.out",
                       format_func=lambda k: OUTPUTS.get(k, k))
x = c2.selectbox("X axis", widgets.with_option(list(AXES), "w.sw.x"), key="w.sw.x",
                 format_func=lambda k: AXES.get(k, k))
y_options = [NONE, *[a for a in AXES if a != x]]
if st.session_state.get("w.sw.y") not in y_options:
    st.session_state["w.sw.y"] = NONE
y = c3.selectbox("Second axis", y_options, key="w.sw.y", format_func=lambda k: AXES.get(k, k))
y = None if y == NONE else y
chart = c4.radio("Chart", ["lines", "heatmap"], key="w.sw.chart", disabled=y is None)
v1, v2 = st.columns(2)
state.setting(f"w.sw.values.{x}", "sw.xv" if state.page_param("sw.x", None) == x else "-",
              default_values(x, sc), str)
x_text = v1.text_input(f"{AXES.get(x, x)} values", key=f"w.sw.values.{x}")
y_text = ""
if y:
    state.setting(f"w.sw.values.{y}", "sw.yv" if state.page_param("sw.y", None) == y else "-",
                  default_values(y, sc), str)
    y_text = v2.text_input(f"{AXES.get(y, y)} values", key=f"w.sw.values.{y}")
state.sync_url({"sw.out": out_key, "sw.x": x, "sw.xv": x_text, "sw.chart": chart,
                **({"sw.y": y, "sw.yv": y_text} if y else {})})
if problem:
    st.error(problem)
    st.stop()

xv = state.or_stop(parse, x, x_text)
yv = state.or_stop(parse, y, y_text) if y else [None]
data = state.or_stop(grid, sc, x, xv, y, yv)
if out_key not in data:
    st.error(f"output: {OUTPUTS.get(out_key, out_key)} is not reported for the {sc['workload']['phase']} phase")
    st.stop()
z, fits = data[out_key].astype(float), data["fits"]
log_y = out_key not in ("mfu", "mbu")
if y and chart == "heatmap":
    fig = charts.sweep_heatmap(xv, yv, z.T, fits.T, AXES[x], AXES[y], OUTPUTS[out_key])
else:
    names = [f"{AXES[y]} = {v}" for v in yv] if y else [OUTPUTS[out_key]]
    fig = charts.sweep_lines(xv, {n: z[:, j] for j, n in enumerate(names)},
                             {n: fits[:, j] for j, n in enumerate(names)},
                             AXES[x], OUTPUTS[out_key], log_x=x not in ("tp",) and len(xv) > 2, log_y=log_y,
                             categorical_x=x in CATEGORICAL,
                             x_label=charts.tokens if x in charts.TOKEN_AXES else charts.count,
                             y_label=charts.value_label(out_key))
st.plotly_chart(fig, key="fig.sweep")

rows = [{x: a, **({y: b} if y else {}), out_key: z[i, j], "fits": bool(fits[i, j])}
        for i, a in enumerate(xv) for j, b in enumerate(yv)]
frame = pd.DataFrame(rows)
with st.expander("Table"):
    st.dataframe(frame, hide_index=True)
st.download_button("Download CSV", frame.to_csv(index=False), file_name="sweep.csv", mime="text/csv", key="csv.sweep")

st.header("Throughput vs latency")
if "batch_size" in (x, y):  # the user's own batch values
    batches, source = np.asarray(xv if x == "batch_size" else yv, dtype=int), "your batch values"
else:  # powers of two, the scenario's batch, and the memory limit itself
    limit = int(state.or_stop(state.cached_predict, sc).max_concurrency)
    extra = [sc["workload"]["batch_size"], *([limit] if 0 < limit <= 2 ** 14 else [])]
    batches, source = np.unique(np.concatenate([2 ** np.arange(0, 11), extra])).astype(int), \
        "powers of two, the scenario's batch and the memory limit"
curve = state.or_stop(state.cached_sweep, sc, batch_size=batches)
phase = sc["workload"]["phase"]
lat_key, lat_label = ("tpot_s", "TPOT") if phase == "generate" else ("latency_s", f"{phase} step latency")
st.plotly_chart(charts.throughput_latency(batches, curve[lat_key], curve["tokens_per_s"], curve["fits"], lat_label),
                key="fig.tl")
fit = batches[np.asarray(curve["fits"], dtype=bool)]
st.caption(f"Batch {batches[0]} to {batches[-1]} ({source}); the largest of these that fits in memory is "
           f"{int(fit.max()) if fit.size else 'none'}; at this context at most "
           f"{int(curve['max_concurrency'][0])} sequences fit (max concurrency).")
tl = pd.DataFrame({"batch_size": batches, lat_key: curve[lat_key], "tokens_per_s": curve["tokens_per_s"],
                   "fits": curve["fits"]})
st.download_button("Download CSV", tl.to_csv(index=False), file_name="throughput_latency.csv", mime="text/csv",
                   key="csv.tl")
