"""roofsim explorer — Scenario page: one prediction, what bounds it, and where time and memory go.

Run with ``make run`` (``streamlit run app/Home.py``).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import explain, figures, state, widgets
from app.fmt import count, percent, rate, seconds, size
from hwmodels import get_accelerator, load_profile

st.set_page_config(page_title="roofsim · Scenario", layout="wide")
state.enter_page("home")


def headline(pred) -> list[tuple[str, str, str]]:
    """(label, value, help) of the headline metrics, formatted from the prediction's fields."""
    m = pred.memory
    if pred.phase == "generate":
        timing = [("TTFT", seconds(pred.ttft_s), "time to first token (the prefill)"),
                  ("TPOT", seconds(pred.tpot_s), "mean time per output token over the generation"),
                  ("End-to-end", seconds(pred.e2e_s), "TTFT + (output tokens - 1) x TPOT")]
    else:
        timing = [("Step latency", seconds(pred.latency_s), f"one {pred.phase} step for the whole batch")]
    return [
        *timing,
        ("Throughput", rate(pred.tokens_per_s), "tokens per second over all replicas"),
        ("Memory / GPU", size(m.total_bytes), f"of {size(m.capacity_bytes)} usable"),
        ("Max concurrency", str(pred.max_concurrency), "sequences whose KV fits beside the weights"),
        ("Bound", pred.bound, "the resource that takes most of the step"),
        ("MFU · MBU", f"{percent(pred.mfu)} · {percent(pred.mbu)}", "model FLOP and HBM bandwidth utilisation"
         + (" of the prefill step" if pred.phase == "generate" else "")),
    ]


def operator_table(pred) -> pd.DataFrame:
    total = sum(o.time_s for o in pred.breakdown) or 1.0
    return pd.DataFrame([{
        "operator": o.name, "phase": o.phase, "count": o.count, "FLOPs": o.flops, "HBM bytes": o.bytes,
        "link bytes": o.link_bytes, "time_s": o.time_s, "share": o.time_s / total, "bound": o.bound,
    } for o in pred.breakdown])


sc, problem = widgets.scenario_sidebar()
st.title("Scenario")
if problem:
    st.error(problem)
    st.stop()
pred = state.or_stop(state.cached_predict, sc)
for warning in pred.warnings:
    st.warning(warning)

st.caption(f"{pred.model} on {pred.num_gpus}× {pred.gpu} · TP {pred.tp} · PP {pred.pp} · {pred.replicas} "
           f"replica{'s' if pred.replicas != 1 else ''} · profile {pred.calibration} · {pred.phase} · "
           f"{pred.overlap} · KV {size(pred.memory.kv_bytes_per_request)} per sequence")
metrics = headline(pred)
for start in range(0, len(metrics), 4):
    for col, (label, value, help_text) in zip(st.columns(4), metrics[start:start + 4]):
        col.metric(label, value, help=help_text)
(st.info if pred.memory.fits else st.warning)(explain.explain(pred, sc))

acc = state.or_stop(get_accelerator, sc["hardware"]["gpu"])
profile = state.or_stop(load_profile, sc["calibration"], gpu=acc.name)
roof, time_tab, mem_tab, table_tab, par_tab = st.tabs(["Roofline", "Time", "Memory", "Operators", "Parallelism"])
with roof:
    st.plotly_chart(figures.roofline(pred, acc, profile, sc["precision"]["compute"]), key="fig.roofline")
    off = sorted({o.name for o in pred.breakdown if not (o.flops > 0 and o.bytes > 0)})
    if off:
        st.caption("Not on the roofline (no FLOPs or no HBM traffic): " + ", ".join(off) + ".")
with time_tab:
    left, right = st.columns([3, 2])
    left.plotly_chart(figures.operator_times(pred), key="fig.ops")
    right.plotly_chart(figures.resource_times(pred), key="fig.resources")
    right.caption("Busy time of each resource before the overlap policy combines them: 'serial' sums the "
                  "operators' rooflines, 'overlapped' takes the busiest resource.")
with mem_tab:
    st.plotly_chart(figures.memory_bar(pred), key="fig.memory")
    st.dataframe(pd.DataFrame([{"part": n, "bytes": v, "size": size(v)} for n, v in figures.memory_parts(pred)]),
                 hide_index=True)
with table_tab:
    df = operator_table(pred)
    sci = st.column_config.NumberColumn(format="%.3e")
    st.dataframe(df, hide_index=True, column_config={
        "FLOPs": sci, "HBM bytes": sci, "link bytes": sci, "time_s": sci,
        "share": st.column_config.NumberColumn(format="percent")})
    st.download_button("Download CSV", df.to_csv(index=False), file_name="operators.csv", mime="text/csv",
                       key="csv.operators")
    st.caption(f"{len(df)} operators, {count(sum(o.flops for o in pred.breakdown))} FLOPs per GPU in total.")
with par_tab:
    par = pred.parallelism or {}
    st.caption(f"{par.get('num_nodes', 1)} node(s) of {par.get('gpus_per_node', pred.num_gpus)} GPUs · scale-up "
               f"{par.get('intra_link', '-')} · network {par.get('inter_link', '-')} · collectives "
               f"{par.get('collective_algorithm', 'auto')}")
    groups = par.get("groups", [])
    if groups:
        st.dataframe(pd.DataFrame([{"group": g["group"], "size": g["size"], "GPUs (first group)": str(g["gpus"]),
                                    "nodes": str(g["nodes"]), "link": g["link"]} for g in groups]), hide_index=True)
    else:
        st.write("One GPU per replica: no parallel groups.")
    comm = par.get("communication_s", {})
    if comm:
        st.dataframe(pd.DataFrame([{"group": k, "exposed communication": seconds(v), "share of step": percent(
            v / pred.latency_s)} for k, v in comm.items()]), hide_index=True)
        where = "bounds" if par.get("communication_bound") else "does not bound"
        st.caption(f"Communication takes {percent(par.get('communication_fraction', 0.0))} of the step and "
                   f"{where} it. Per-collective link, algorithm and hidden time are in the Operators tab's JSON "
                   "(`roofsim predict --json`).")
