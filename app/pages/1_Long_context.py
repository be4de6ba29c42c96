"""Long context: the seed paper's four limits (prefill, concurrency, decode, context switch) over
context length for the sidebar's scenario, via ``simulator.long_context.long_context_table``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import charts, state, widgets
from app.fmt import seconds, size
from simulator import get_model
from simulator.checks import context_warning

st.set_page_config(page_title="roofsim · Long context", layout="wide")
state.enter_page("long_context")

POWERS = [2 ** k for k in range(10, 21)]  # 1K .. 1M


def label(tokens: int) -> str:
    return f"{tokens // 2 ** 20}M" if tokens >= 2 ** 20 else f"{tokens // 2 ** 10}K"


def contexts(lo: int, hi: int, per_octave: int) -> list[int]:
    octaves = int(round(np.log2(hi / lo)))
    return sorted({int(round(lo * 2 ** (i / per_octave))) for i in range(octaves * per_octave + 1)})


def table_frame(t: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame({
        "context": t["context_len"].astype(int),
        "KV/user": [size(v) for v in t["kv_bytes_per_request"]],
        "max users": t["max_concurrency"].astype(int),
        "prefill (1 user)": [seconds(v) for v in t["prefill_s"]],
        "decode step (1 user)": [seconds(v) for v in t["decode_step_s"]],
        "step @ max users": [seconds(v) for v in t["decode_step_full_batch_s"]],
        "context switch": [seconds(v) for v in t["context_switch_s"]],
        "sessions/s": [f"{v:.3g}" for v in t["session_throughput_per_s"]],
    })


def _range(value) -> tuple[int, int]:
    lo, hi = (int(v) for v in value)
    if lo not in POWERS or hi not in POWERS:
        raise ValueError("not a power of two in range")
    return lo, hi


def _choice(value) -> int:
    if int(value) not in (1, 2, 4):
        raise ValueError("not a choice")
    return int(value)


state.setting("w.lc.lo", "lc.range", POWERS[0], lambda v: _range(v)[0])
state.setting("w.lc.hi", "lc.range", POWERS[-1], lambda v: _range(v)[1])
state.setting("w.lc.per_octave", "lc.per_octave", 2, _choice)
state.setting("w.lc.decode", "lc.decode", 250, lambda v: max(1, int(v)))

st.title("Long context")
st.caption("The four limits the KV cache sets as context grows (Fu 2024, arXiv 2405.08944): prefill time "
           "(FLOP/s), how many users fit (HBM size), decode step time (HBM bandwidth) and the time to swap one "
           "user's cache for another's over the host link.")
c0, c1, c2, c3 = st.columns(4)
lo = c0.selectbox("Shortest context", POWERS, key="w.lc.lo", format_func=label)
hi = c1.selectbox("Longest context", POWERS, key="w.lc.hi", format_func=label)
per_octave = c2.selectbox("Points per doubling", [1, 2, 4], key="w.lc.per_octave")
decode = c3.number_input("Tokens decoded per user", min_value=1, max_value=1_000_000, key="w.lc.decode")
sc, problem = widgets.scenario_sidebar({"lc.range": [lo, hi], "lc.per_octave": per_octave, "lc.decode": decode})
if problem:
    st.error(problem)
    st.stop()
if hi <= lo:
    st.error("context range: the longest context must exceed the shortest")
    st.stop()

ctx = contexts(lo, hi, per_octave)
spec, _ = state.attempt(get_model, sc["model"])
beyond = context_warning(spec, ctx, "context") if spec is not None else None
if beyond:
    st.warning(beyond)
table = state.or_stop(state.cached_long_context, sc, ctx, decode)
tables = {"with techniques" if sc["techniques"] else "scenario": table}
if sc["techniques"]:
    names = ", ".join(t["name"] for t in sc["techniques"])
    tables["without techniques"] = state.or_stop(state.cached_long_context, {**sc, "techniques": []}, ctx, decode)
    st.caption(f"Solid: with {names}; dashed: the same scenario without techniques.")

st.plotly_chart(charts.long_context(tables), key="fig.long_context")
st.caption("Max users counts sequences whose KV cache fits beside the weights; where none fits the point is "
           "left out. 'Step at max users' is one decode step with every resident user in the batch.")
for name, t in tables.items():
    st.subheader(f"Table — {name}")
    st.dataframe(table_frame(t), hide_index=True)
    raw = pd.DataFrame({k: np.asarray(v) for k, v in t.items()})
    st.download_button("Download CSV", raw.to_csv(index=False), file_name=f"long_context_{name.replace(' ', '_')}.csv",
                       mime="text/csv", key=f"csv.lc.{name}")
