"""Calibration: a profile's fitted efficiency curves per kernel kind, its raw points when it keeps
them, its fit statistics, and predicted-vs-measured tables (carried by the profile, or from the
validation run shipped for its GPU, or uploaded)."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from app import charts, state, widgets
from app.calibration_data import comparison_tables, raw_points, scalar_tables, validation_results
from app.fmt import seconds, size
from app.tables import readable
from hwmodels import builtin_profiles, get_accelerator, list_accelerators, load_profile

st.set_page_config(page_title="roofsim · Calibration", layout="wide")
state.enter_page("calibration")

UPLOAD = "upload / paste"
RAW_KEYS = ("points", "columns", "alternatives", "datasheet")  # shown as curves or raw JSON, not as tables


def load(choice: str):
    if choice != UPLOAD:
        state.no_server_files({"calibration": choice})
        return load_profile(choice)
    upload = st.file_uploader("Profile JSON", type=["json"], key="cal.upload")
    if upload is not None:
        text = state.upload_text(upload, "profile")
    else:
        text = st.text_area("…or paste it", key="cal.text")
    return load_profile(widgets.parse_mapping(text, "profile", "a profile JSON"))


def table(name: str, frame: pd.DataFrame, key: str, index: bool = False) -> None:
    st.markdown(f"`{name}`")
    st.dataframe(readable(frame), hide_index=not index)
    st.download_button("Download CSV", frame.to_csv(index=index), file_name=f"{name.replace('.', '_')}.csv",
                       mime="text/csv", key=key)


sc, problem = widgets.scenario_sidebar()
st.title("Calibration")
st.caption("A profile says how much of each datasheet peak a kind of kernel reaches, as a function of its size.")
used, _ = state.attempt(state.cached_predict, sc) if not problem else (None, None)
state.setting("w.cal.profile", "-", used.calibration if used and used.calibration in builtin_profiles() else "default")
choice = st.selectbox("Profile", widgets.with_option([*builtin_profiles(), UPLOAD], "w.cal.profile"),
                      key="w.cal.profile", help="the scenario's own profile is picked first")
state.sync_url()
profile = state.or_stop(load, choice)
acc, _ = state.attempt(get_accelerator, profile.device) if profile.device in list_accelerators() else (None, None)

c1, c2, c3 = st.columns(3)
c1.metric("Profile", profile.name)
c2.metric("Measured on", profile.device or "(generic)")
c3.metric("Workspace", size(profile.workspace_bytes))
if profile.description:
    st.caption(profile.description)

raw = raw_points(profile, acc)
st.plotly_chart(charts.efficiency_curves(profile, raw), key="fig.efficiency")
st.caption(f"{len(raw)} measured points shown: each launch's achieved fraction of the datasheet peak, launch "
           "overhead included (so small launches sit below the curves, which leave it to the per-kind overhead)."
           if raw else "This profile keeps no raw measurements; curves only.")

kinds = pd.DataFrame([{
    "kind": kind, "launch overhead": seconds(eff.overhead_s),
    "compute eff. (large)": f"{float(eff.compute(1e15)):.1%}", "memory eff. (large)": f"{float(eff.memory(1e12)):.1%}",
    "basis": eff.basis} for kind, eff in profile.kinds.items()])
st.subheader("Kinds")
st.dataframe(kinds, hide_index=True)
st.download_button("Download CSV", kinds.to_csv(index=False), file_name=f"{profile.name}_kinds.csv", mime="text/csv",
                   key="csv.kinds")

stats = scalar_tables(profile.measurements, "measurements", skip=RAW_KEYS)
if stats:
    st.subheader("Fit and measurement statistics")
    for i, (name, rows) in enumerate(stats):
        table(name, pd.DataFrame.from_dict(rows, orient="index"), f"csv.stats.{i}", index=True)

st.subheader("Predicted vs measured")
sources = [("profile", {"measurements": profile.measurements, "environment": profile.environment})]
# only a catalog device names a shipped result file (an uploaded profile's device is the user's text)
shipped = validation_results(profile) if profile.device in list_accelerators() else None
if shipped:
    sources.append(shipped)
upload = st.file_uploader("A validation result (roofsim validate's JSON)", type=["json"], key="cal.validation")
if upload is not None:
    data, error = state.attempt(lambda: widgets.parse_mapping(state.upload_text(upload, "validation"),
                                                              "validation", "a validation JSON"))
    if error:
        st.error(error)
    else:
        sources.append((upload.name, data))
found = 0
for source, data in sources:
    for name, records in comparison_tables(data):
        found += 1
        table(f"{source}: {name}", pd.DataFrame(records), f"csv.cmp.{found}")
    if source != "profile":
        for name, rows in scalar_tables(data):
            found += 1
            table(f"{source}: {name}", pd.DataFrame.from_dict(rows, orient="index"), f"csv.cmp.{found}", index=True)
if not found:
    st.caption("This profile carries no predicted-vs-measured table, and no validation run is shipped for it.")

if profile.achieved_peaks or profile.environment:
    with st.expander("Environment and achieved peaks"):
        st.json({"achieved_peaks": profile.achieved_peaks, "environment": profile.environment,
                 "command": profile.command})
if profile.measurements:
    with st.expander("Raw measurements (JSON)"):
        st.code(json.dumps(profile.measurements, indent=1)[:20000], language="json")
if used is None and not problem:
    _, why = state.attempt(state.cached_predict, sc)
    st.info(f"The sidebar's scenario does not evaluate: {why}")
