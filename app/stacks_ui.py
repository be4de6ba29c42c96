"""The Calibration page's stack section: upload (or paste) a stack profile JSON or a measurement CSV; a
CSV is fitted (``simulator.stacks.fit_measurements``) and its parameters, errors in and out of sample,
per-row residuals and a predicted-vs-measured plot are shown; a JSON shows what it was fitted to."""

from __future__ import annotations

import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import state
from simulator.stacks import fit_measurements, stack_from_dict
from simulator.stacks.measurements import parse_measurements
from simulator.stacks.presets import STRUCTURES

MAX_TEXT = 2 * 2**20


@st.cache_data(show_spinner="fitting the stack profile…", max_entries=8)
def fit_text(text: str, structure: str):
    """The fit report of a measurement CSV given as text (cached by content)."""
    rows = parse_measurements(text, field="measurements")
    return fit_measurements(rows, structure=structure, name="uploaded").model_dump(mode="json")


def _scatter(rows: list[dict]) -> go.Figure:
    fig = go.Figure()
    for phase in sorted({r["phase"] for r in rows}):
        sel = [r for r in rows if r["phase"] == phase]
        fig.add_trace(go.Scatter(x=[r["measured_s"] for r in sel], y=[r["predicted_s"] for r in sel], mode="markers",
                                 name=f"{phase}, in sample", text=[f"{r['model']} b={r['batch']} n={r['length']}"
                                                                  for r in sel]))
        held = [r for r in sel if r["held_out_error"] is not None]
        fig.add_trace(go.Scatter(x=[r["measured_s"] for r in held],
                                 y=[r["measured_s"] * (1 + r["held_out_error"]) for r in held], mode="markers",
                                 marker_symbol="x", name=f"{phase}, model held out"))
    lo = min(r["measured_s"] for r in rows) / 1.3
    hi = max(r["measured_s"] for r in rows) * 1.3
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="predicted = measured",
                             line={"dash": "dot", "color": "grey"}))
    fig.update_layout(xaxis={"type": "log", "title": "measured step (s)"},
                      yaxis={"type": "log", "title": "predicted step (s)"}, height=420)
    return fig


def _show_stack(stack) -> None:
    st.markdown(f"**{stack.name}** · execution `{stack.fixed.execution}` · fitted on "
                f"{', '.join(stack.residuals.models) or 'no rows'} ({', '.join(stack.residuals.gpus) or '-'})")
    eff = pd.DataFrame([{"kind": k, "scale": c.scale, "slope per decade": c.slope_per_decade}
                        for k, c in stack.efficiency.items()])
    if not eff.empty:
        st.dataframe(eff, hide_index=True)
    st.json({"implementation": stack.implementation.model_dump(), "fixed": stack.fixed.model_dump()}, expanded=False)
    errors = stack.fit.get("errors") or []
    if errors:
        st.dataframe(pd.DataFrame(errors), hide_index=True)


def stack_section() -> None:
    st.subheader("Your stack")
    st.caption("A stack profile corrects the GPU's profile for the engine you run (docs/calibration.md). Upload a "
               "stack profile JSON, or a measurement CSV of your own steps to fit one here.")
    structure = st.selectbox("Implementation (for a CSV)", list(STRUCTURES), key="cal.stack.structure",
                             help="what the stack runs besides roofsim's fused kernels; the fit adjusts the rest")
    upload = st.file_uploader("Stack profile JSON or measurement CSV", type=["json", "csv"], key="cal.stack.upload")
    text = upload.getvalue()[:MAX_TEXT].decode("utf-8", errors="replace") if upload is not None else \
        st.text_area("…or paste it", key="cal.stack.text")
    if not text or not text.strip():
        return
    if text.lstrip().startswith("{"):
        data, error = state.attempt(json.loads, text)
        stack, error = state.attempt(stack_from_dict, data, "stack") if not error else (None, error)
        if error:
            st.error(error)
            return
        _show_stack(stack)
        return
    report, error = state.attempt(fit_text, text, structure)
    if error:
        st.error(error)
        return
    errors = pd.DataFrame(report["errors"])
    c1, c2 = st.columns(2)
    for col, label in ((c1, "in sample"), (c2, "model held out")):
        sel = errors[errors["label"] == label] if not errors.empty else errors
        col.metric(f"Median error, {label}", " · ".join(f"{p} {m:.1%}" for p, m in zip(sel["phase"], sel["median_abs"]))
                   or "-")
    st.plotly_chart(_scatter(report["rows"]), key="fig.stack.scatter")
    st.dataframe(pd.DataFrame(report["parameters"]), hide_index=True)
    st.dataframe(errors, hide_index=True)
    residuals = pd.DataFrame(report["rows"])
    st.dataframe(residuals, hide_index=True)
    for note in report["notes"]:
        st.caption(note)
    st.download_button("Download the stack profile", json.dumps(report["stack"], indent=2),
                       file_name="stack.json", mime="application/json", key="cal.stack.download")
