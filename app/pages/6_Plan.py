"""Plan: the cheapest deployments for a traffic and an SLO, the cost-interactivity Pareto frontier,
the verification by the DES, and the engine command; each plan opens on the Scenario and Serve pages."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import state
from app.fmt import seconds
from hwmodels.costs import cheapest_prices
from simulator import list_models, plan
from simulator.planning.models import SWITCHES

st.set_page_config(page_title="roofsim · Plan", layout="wide")
state.enter_page("plan")

DEFAULT_GPUS = ["h100-sxm", "h200-sxm", "a100-80gb-sxm"]


@st.cache_data(max_entries=64, show_spinner="searching")
def cached_plan(request_json: str):
    return plan(json.loads(request_json))


def pareto_figure(result) -> go.Figure:
    """Output tokens/s per GPU against tokens/s per user (1 / TPOT) over the Pareto set, by GPU."""
    fig = go.Figure()
    for gpu in sorted({p.gpu for p in result.pareto}):
        pts = [p for p in result.pareto if p.gpu == gpu]
        fig.add_trace(go.Scatter(
            x=[p.tokens_per_s_per_user for p in pts], y=[p.output_tokens_per_s_per_gpu for p in pts],
            mode="markers", name=gpu, text=[f"{p.num_gpus} GPUs, {p.layout(nodes='')}, "
                                            f"${p.usd_per_hour:,.2f}/h" for p in pts]))
    fig.update_layout(xaxis_title="tokens/s per user (1 / TPOT p50)", yaxis_title="output tokens/s per GPU",
                      height=420, margin=dict(l=10, r=10, t=30, b=10))
    return fig


def plans_table(result) -> pd.DataFrame:
    pct = f"p{result.request.percentile:g}"
    return pd.DataFrame([{
        "GPUs": f"{p.num_gpus}x {p.gpu}" + (f" + {p.decode_gpu}" if p.decode_gpu and p.decode_gpu != p.gpu else ""),
        "layout": p.layout(nodes=", {} nodes each"), "techniques": ", ".join(p.techniques) or "-",
        "max seqs": p.max_num_seqs, "$/hour": round(p.usd_per_hour, 2), "$/M tokens": round(p.usd_per_million_tokens, 3),
        f"TTFT {pct}": seconds(p.ttft_p90_s), f"TPOT {pct}": seconds(p.tpot_p90_s),
        "DES TTFT": seconds(p.verification.ttft_pct_s) if p.verification else "-",
        "DES TPOT": seconds(p.verification.tpot_pct_s) if p.verification else "-",
        "verified": "-" if p.verified is None else ("meets SLO" if p.verified else "misses SLO"),
        "J/token": round(p.joules_per_token, 3),
    } for p in result.plans])


def links(p, request: dict) -> str:
    """Markdown links opening the plan's scenario on the Scenario page, and with its traffic, SLOs and
    engine settings on the Serve page."""
    scenario = state.to_params(p.scenario)
    cfg = p.serve_config
    serve = {**scenario, "sv.rate": request["rate"], "sv.prompt": str(request["prompt_len"]),
             "sv.output": str(request["output_len"]), "sv.seqs": cfg["max_num_seqs"],
             "sv.budget": cfg["max_num_batched_tokens"], "sv.chunked": cfg["chunked_prefill"],
             "sv.ttft": request["slo_ttft_s"], "sv.tpot": request["slo_tpot_s"]}
    if cfg.get("disaggregate") and not cfg.get("decode_overrides"):
        serve["sv.split"] = cfg["disaggregate"]
    serve = {k: v if isinstance(v, str) else json.dumps(v) for k, v in serve.items()}
    return f"[open on the Scenario page](/?{urlencode(scenario)}) · [open on the Serve page](/Serve?{urlencode(serve)})"


def _names(value) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of names")
    return value


def _flag(value) -> bool:
    return value if isinstance(value, bool) else str(value).lower() == "true"


def _whole(value) -> int:
    return int(float(value))


for key, default, cast in (("pl.model", "llama-3.1-70b", str), ("pl.gpus", DEFAULT_GPUS, _names),
                           ("pl.techniques", [], _names), ("pl.rate", 4.0, float), ("pl.prompt", 2048, _whole),
                           ("pl.output", 256, _whole), ("pl.ttft", 2.0, float), ("pl.tpot", 0.05, float),
                           ("pl.pct", 90.0, float), ("pl.max_gpus", 64, _whole), ("pl.max_nodes", 2, _whole),
                           ("pl.disagg", True, _flag),
                           ("pl.verify", 0, _whole)):
    state.setting(f"w.{key}", key, default, cast)

st.title("Plan")
with st.sidebar:
    st.header("Traffic and SLO")
    models = list_models()
    model = st.selectbox("Model", models, key="w.pl.model")
    rate = st.number_input("Request rate (req/s)", min_value=0.01, step=0.5, key="w.pl.rate")
    prompt = st.number_input("Prompt tokens", min_value=1, step=128, key="w.pl.prompt")
    output = st.number_input("Output tokens", min_value=1, step=32, key="w.pl.output")
    ttft = st.number_input("TTFT SLO (s)", min_value=0.001, step=0.1, format="%.3f", key="w.pl.ttft")
    tpot = st.number_input("TPOT SLO (s)", min_value=0.001, step=0.005, format="%.3f", key="w.pl.tpot")
    pct = st.number_input("Percentile", min_value=1.0, max_value=99.0, step=1.0, key="w.pl.pct")
    st.header("Space")
    gpus = st.multiselect("GPUs", sorted(cheapest_prices()), key="w.pl.gpus")
    techniques = st.multiselect("Techniques allowed", list(SWITCHES), key="w.pl.techniques")
    max_gpus = st.number_input("Max GPUs", min_value=1, max_value=4096, key="w.pl.max_gpus")
    max_nodes = st.number_input("Max nodes per replica", min_value=1, max_value=64, key="w.pl.max_nodes")
    disagg = st.checkbox("Search prefill/decode splits", key="w.pl.disagg")
    verify = st.number_input("Verify the K cheapest with the DES", min_value=0, max_value=8, key="w.pl.verify")
state.sync_url({"pl.model": model, "pl.gpus": gpus, "pl.techniques": techniques, "pl.rate": rate,
                "pl.prompt": prompt, "pl.output": output, "pl.ttft": ttft, "pl.tpot": tpot, "pl.pct": pct,
                "pl.max_gpus": max_gpus, "pl.max_nodes": max_nodes, "pl.disagg": disagg, "pl.verify": verify})

request = {"model": model, "rate": rate, "prompt_len": int(prompt), "output_len": int(output), "slo_ttft_s": ttft,
           "slo_tpot_s": tpot, "percentile": pct, "gpus": gpus or None, "max_gpus": int(max_gpus),
           "max_nodes": int(max_nodes),
           "techniques": [{"name": t} for t in techniques], "disaggregate": bool(disagg), "verify": int(verify)}
result = state.or_stop(cached_plan, json.dumps(request, sort_keys=True))

c1, c2, c3, c4 = st.columns(4)
c1.metric("Configurations searched", f"{result.searched_configs:,}")
c2.metric("Search time", seconds(result.search_time_s))
best = result.cheapest
c3.metric("Cheapest plan", f"${best.usd_per_hour:,.2f}/h" if best else "none")
c4.metric("$/M tokens (in · out)", f"{best.usd_per_million_input_tokens:.3f} · {best.usd_per_million_output_tokens:.3f}"
          if best else "-")
if best is None:
    st.warning(f"No configuration in this space meets both SLOs at this rate: {result.why_none}.")
    st.stop()

st.subheader("Cost against interactivity: the Pareto frontier")
st.plotly_chart(pareto_figure(result), key="fig.pareto")
st.subheader("Cheapest plans")
st.dataframe(plans_table(result), hide_index=True)
st.subheader("The cheapest plan")
st.markdown(f"**{best.num_gpus}x {best.gpu}** ({best.layout(nodes=', {} nodes each')}), "
            f"bound by {best.bound}. Cheaper if {best.cheaper_if}.")
st.markdown(links(best, request))
if best.serve_config.get("decode_overrides"):
    st.caption("The Serve page runs one GPU type and layout (here the prefill pool's, co-located); the `roofsim "
               "serve` command below runs the split as planned.")
st.caption("vLLM")
st.code(best.vllm_command, language="bash")
st.caption("SGLang")
st.code(best.sglang_command, language="bash")
st.caption("Simulate it: `roofsim serve` with the plan's scenario saved as scenario.json")
st.code(best.serve_command, language="bash")
st.download_button("scenario.json", json.dumps(best.scenario, indent=2), file_name="scenario.json",
                   mime="application/json", key="dl.scenario")
