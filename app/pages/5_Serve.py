"""Serve: the sidebar's scenario under a request stream (``simulator.serve``): latency against load
with the saturation point, CDFs, batch size and KV occupancy over time, co-located vs disaggregated."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import state, widgets
from app.fmt import percent, seconds
from hwmodels.errors import InputError
from simulator import serve

st.set_page_config(page_title="roofsim · Serve", layout="wide")
state.enter_page("serve")

SETTINGS = {  # URL parameter -> (default, type)
    "sv.rate": (8.0, float), "sv.n": (300, int), "sv.arrival": ("poisson", str), "sv.prompt": ("1024", str),
    "sv.output": ("256", str), "sv.seqs": (256, int), "sv.budget": (2048, int), "sv.chunked": (True, bool),
    "sv.rates": ("2, 4, 8, 16, 24, 32", str), "sv.split": ("1:1", str), "sv.ttft": (0.5, float),
    "sv.tpot": (0.05, float), "sv.seed": (0, int),
}


def parse_rates(text: str) -> list[float]:
    try:
        values = sorted({float(t) for t in text.replace(";", ",").replace(" ", ",").split(",") if t.strip()})
    except ValueError:
        raise InputError("serve.rates", f"expected numbers, got {text!r}") from None
    if not values or values[0] <= 0 or len(values) > 12:
        raise InputError("serve.rates", "give 1 to 12 positive request rates")
    return values


@st.cache_data(max_entries=256, show_spinner=False)
def _run(scenario_json: str, workload_json: str, config_json: str) -> dict:
    res = serve(json.loads(scenario_json), json.loads(workload_json), json.loads(config_json))
    rec = res.records
    return {"summary": res.contract(), "records": {k: rec[k] for k in rec.dtype.names}, "timeline": res.timeline}


def run(sc: dict, workload: dict, config: dict) -> dict:
    return _run(state.key_of(sc), json.dumps(workload, sort_keys=True), json.dumps(config, sort_keys=True))


def cdf_figure(series: dict[str, np.ndarray], title: str) -> go.Figure:
    fig = go.Figure()
    for name, values in series.items():
        v = np.sort(values[np.isfinite(values)])
        fig.add_scatter(x=v, y=np.arange(1, v.size + 1) / max(v.size, 1), name=name, mode="lines")
    fig.update_layout(title=title, xaxis_title="seconds", yaxis_title="share of requests", height=330,
                      margin={"t": 40, "b": 40})
    return fig


def latencies(out: dict) -> dict[str, np.ndarray]:
    r = out["records"]
    done = r["finish_s"] >= 0
    ttft = (r["first_token_s"] - r["arrival_s"])[done]
    multi = done & (r["output_tokens"] > 1)
    tpot = ((r["finish_s"] - r["first_token_s"]) / np.maximum(r["output_tokens"] - 1, 1))[multi]
    return {"TTFT": ttft, "TPOT": tpot}


sc, problem = widgets.scenario_sidebar(sync=False)
st.title("Serve")
st.caption("A request-level simulation of continuous batching on the sidebar's deployment: every engine step "
           "is priced by the step model (see docs/serving.md for the scheduler rules).")

for name, (default, cast) in SETTINGS.items():
    state.setting(f"w.{name}", name, default, cast)
c = st.columns(4)
rate = c[0].number_input("Request rate (req/s)", min_value=0.01, max_value=1e5, key="w.sv.rate")
n = c[1].number_input("Requests", min_value=10, max_value=20_000, step=100, key="w.sv.n")
arrival = c[2].text_input("Arrivals (poisson, gamma:CV, fixed)", key="w.sv.arrival")
seed = c[3].number_input("Seed", min_value=0, max_value=2**31 - 1, key="w.sv.seed")
c = st.columns(4)
prompt = c[0].text_input("Prompt tokens (N, uniform:A,B, lognormal:M,S)", key="w.sv.prompt")
output = c[1].text_input("Output tokens", key="w.sv.output")
seqs = c[2].number_input("Max batch (max_num_seqs)", min_value=1, max_value=4096, key="w.sv.seqs")
budget = c[3].number_input("Token budget (max_num_batched_tokens)", min_value=1, max_value=1 << 20, key="w.sv.budget")
c = st.columns(4)
chunked = c[0].checkbox("Chunked prefill", key="w.sv.chunked")
slo_ttft = c[1].number_input("TTFT SLO (s)", min_value=0.001, max_value=600.0, key="w.sv.ttft")
slo_tpot = c[2].number_input("TPOT SLO (s)", min_value=0.0001, max_value=60.0, key="w.sv.tpot")
split = c[3].text_input("Disaggregate P:D", key="w.sv.split")
rates_text = st.text_input("Rates for the latency-vs-load curve (req/s)", key="w.sv.rates")
state.sync_url({name: st.session_state[f"w.{name}"] for name in SETTINGS})
if problem:
    st.error(problem)
    st.stop()

workload = {"rate": float(rate), "num_requests": int(n), "arrival": arrival, "prompt_len": prompt.strip(),
            "output_len": output.strip(), "seed": int(seed)}
config = {"max_num_seqs": int(seqs), "max_num_batched_tokens": int(budget), "chunked_prefill": bool(chunked),
          "slo_ttft_s": float(slo_ttft), "slo_tpot_s": float(slo_tpot)}
out = state.or_stop(run, sc, workload, config)
s = out["summary"]
m = st.columns(6)
m[0].metric("TTFT p50 · p99", f"{seconds(s['ttft_s']['p50'])} · {seconds(s['ttft_s']['p99'])}")
m[1].metric("TPOT p50 · p99", f"{seconds(s['tpot_s']['p50'])} · {seconds(s['tpot_s']['p99'])}")
m[2].metric("Throughput", f"{s['output_tokens_per_s']:,.0f} out tok/s")
m[3].metric("Goodput", f"{s['goodput_req_per_s']:.3g} req/s")
m[4].metric("SLO attainment", percent(s["slo_attainment"]))
m[5].metric("Preemptions · rejected", f"{s['preemptions']} · {s['rejected']}")
if s["saturated"]:
    st.warning(f"Saturated at {rate:g} req/s: the deployment produces fewer tokens than are asked for "
               f"(served {s['requests_per_s']:.3g} req/s).")

st.header("Latency against load")
rates = state.or_stop(parse_rates, rates_text)
curve = [state.or_stop(run, sc, {**workload, "rate": r}, config)["summary"] for r in rates]
fig = go.Figure()
for metric, dash in (("ttft_s", "solid"), ("tpot_s", "dot")):
    for q in ("p50", "p90", "p99"):
        fig.add_scatter(x=rates, y=[c[metric][q] for c in curve], name=f"{metric[:4].upper()} {q}",
                        mode="lines+markers", line={"dash": dash})
saturated = [r for r, c in zip(rates, curve) if c["saturated"]]
if saturated:
    fig.add_vline(x=saturated[0], line_dash="dash", line_color="red", annotation_text=f"saturated at {saturated[0]:g}")
fig.update_layout(xaxis_title="request rate (req/s)", yaxis_title="seconds", yaxis_type="log", height=420)
st.plotly_chart(fig, key="fig.load")
table = pd.DataFrame({"rate": rates, "served req/s": [c["requests_per_s"] for c in curve],
                      "TTFT p50": [c["ttft_s"]["p50"] for c in curve], "TTFT p99": [c["ttft_s"]["p99"] for c in curve],
                      "TPOT p50": [c["tpot_s"]["p50"] for c in curve], "TPOT p99": [c["tpot_s"]["p99"] for c in curve],
                      "goodput": [c["goodput_req_per_s"] for c in curve],
                      "saturated": [c["saturated"] for c in curve]})
st.caption("Saturation: " + (f"first at {saturated[0]:g} req/s." if saturated else "none of these rates saturate."))
st.dataframe(table, hide_index=True, key="df.load")
st.download_button("Download CSV", table.to_csv(index=False), file_name="latency_vs_load.csv", mime="text/csv",
                   key="csv.load")

st.header("Distributions")
c1, c2 = st.columns(2)
lat = latencies(out)
c1.plotly_chart(cdf_figure({"TTFT": lat["TTFT"]}, "TTFT CDF"), key="fig.cdf.ttft")
c2.plotly_chart(cdf_figure({"TPOT": lat["TPOT"]}, "TPOT CDF"), key="fig.cdf.tpot")

st.header("Batch size and KV occupancy over time")
tl = out["timeline"]
fig = go.Figure()
for rep in np.unique(tl["replica"]):
    sel = tl["replica"] == rep
    fig.add_scatter(x=tl["start_s"][sel], y=tl["running"][sel], name=f"replica {rep}: running", mode="lines")
    fig.add_scatter(x=tl["start_s"][sel], y=100 * tl["kv_occupancy"][sel], name=f"replica {rep}: KV used (%)",
                    mode="lines", yaxis="y2")
fig.update_layout(xaxis_title="time (s)", yaxis_title="running sequences", height=380,
                  yaxis2={"title": "KV blocks used (%)", "overlaying": "y", "side": "right"})
st.plotly_chart(fig, key="fig.timeline")

st.header("Co-located vs disaggregated")
colo_out = state.attempt(run, sc, workload, {**config, "router": "least_outstanding"})
disagg = state.attempt(run, sc, workload, {**config, "disaggregate": split.strip()})
left, right = st.columns(2)
for col, title, (res, err) in ((left, "co-located (least outstanding)", colo_out),
                               (right, f"disaggregated {split.strip()}", disagg)):
    col.subheader(title)
    if err:
        col.info(err)
        continue
    r = res["summary"]
    col.metric("TTFT p99", seconds(r["ttft_s"]["p99"]))
    col.metric("TPOT p99", seconds(r["tpot_s"]["p99"]))
    col.metric("Goodput", f"{r['goodput_req_per_s']:.3g} req/s")
    if r["kv_transfer_s"]["mean"] is not None:
        col.metric("KV transfer mean", seconds(r["kv_transfer_s"]["mean"]))
if colo_out[1] is None and disagg[1] is None:
    st.plotly_chart(cdf_figure({"co-located TPOT": latencies(colo_out[0])["TPOT"],
                                "disaggregated TPOT": latencies(disagg[0])["TPOT"]}, "TPOT CDF, side by side"),
                    key="fig.cdf.split")
