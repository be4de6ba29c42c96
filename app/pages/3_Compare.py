"""Compare: the sidebar's scenario (A) beside up to three variants, each A with a few fields changed,
with every number's change against A."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import state, techniques_ui, widgets
from app.fmt import delta, percent, rate, seconds, size
from hwmodels import DTYPES, builtin_profiles, list_accelerators
from simulator.techniques import REGISTRY

st.set_page_config(page_title="roofsim · Compare", layout="wide")
state.enter_page("compare")

LETTERS = "ABCD"
# field -> (label, options or None for a positive integer)
FIELDS = {
    "hardware.gpu": ("GPU", lambda: list_accelerators()),
    "hardware.num_gpus": ("GPUs", None),
    "parallelism.tp": ("TP", None),
    "precision.weights": ("weights dtype", lambda: list(DTYPES)),
    "precision.kv_cache": ("KV dtype", lambda: list(DTYPES)),
    "precision.compute": ("compute dtype", lambda: list(DTYPES)),
    "workload.batch_size": ("batch", None),
    "workload.prompt_len": ("prompt tokens", None),
    "workload.context_len": ("context tokens", None),
    "workload.output_len": ("output tokens", None),
    "calibration": ("calibration", lambda: ["auto", *builtin_profiles()]),
    "techniques": ("techniques", None),
}
DEFAULT_VARIANTS = [{"precision.kv_cache": "fp8"}, {"hardware.gpu": "h200-sxm"}, {"precision.weights": "fp8"}]


def _valid_variants(value) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(v, dict) and set(v) <= set(FIELDS) for v in value):
        raise ValueError("not a list of overrides")
    return value[:3]


def variant_editor(i: int, base: dict, old: dict) -> dict:
    """Widgets for variant ``i``: which fields change, and their values (the rest follow A)."""
    pick_key = f"w.cmp{i}.fields"
    widgets.init(pick_key, list(old))
    fields = st.multiselect("Change", list(FIELDS), key=pick_key, format_func=lambda f: FIELDS[f][0])
    overrides = {}
    for field in fields:
        label, options = FIELDS[field]
        key = f"w.cmp{i}.{field}"
        value = old.get(field, state.get(base, field))
        if field == "techniques":
            widgets.init(key, [t["name"] for t in value])
            options = list(REGISTRY) + [t for t in st.session_state[key] if t not in REGISTRY]
            names = st.multiselect(label, options, key=key)
            base_entries = {t["name"]: t for t in base["techniques"]}
            overrides[field] = [base_entries.get(n) or techniques_ui.entry_with_defaults(n) for n in names]
        elif options is not None:
            widgets.init(key, value if isinstance(value, str) else options()[0])
            overrides[field] = st.selectbox(label, widgets.with_option(options(), key), key=key)
        else:
            widgets.init(key, int(value) if value is not None else int(base["hardware"]["num_gpus"]))
            overrides[field] = int(st.number_input(label, min_value=1, max_value=100_000_000, step=1, key=key))
    return overrides


def difference(base: dict, overrides: dict) -> str:
    """What a variant changes against A, as a bar label: 'KV dtype fp8, GPU h200-sxm'."""
    parts = []
    for field, value in overrides.items():
        if value == state.get(base, field):
            continue
        shown = (", ".join(t["name"] for t in value) or "none") if field == "techniques" else value
        parts.append(f"{FIELDS[field][0]} {shown}")
    return "; ".join(parts) or "same as A"


def rows(pred) -> dict[str, tuple[str, float | None]]:
    """Metric -> (shown text, number used for the delta)."""
    m = pred.memory
    timing = ({"TTFT": (seconds(pred.ttft_s), pred.ttft_s), "TPOT": (seconds(pred.tpot_s), pred.tpot_s),
               "end-to-end": (seconds(pred.e2e_s), pred.e2e_s)} if pred.phase == "generate"
              else {"step latency": (seconds(pred.latency_s), pred.latency_s)})
    return {**timing,
            "throughput": (rate(pred.tokens_per_s), pred.tokens_per_s),
            "memory / GPU": (size(m.total_bytes), m.total_bytes),
            "fits": ("yes" if m.fits else "no", None),
            "max concurrency": (str(pred.max_concurrency), float(pred.max_concurrency)),
            "bound": (pred.bound, None),
            "MFU": (percent(pred.mfu), pred.mfu), "MBU": (percent(pred.mbu), pred.mbu),
            "hardware": (f"{pred.num_gpus}× {pred.gpu}, TP {pred.tp}", None)}


base, problem = widgets.scenario_sidebar(sync=False)
st.title("Compare")
st.caption("A is the sidebar's scenario; each variant is A with the fields you pick changed.")
if "compare" not in st.session_state:
    st.session_state["compare"] = state.page_param("cmp", DEFAULT_VARIANTS, _valid_variants)
variants_old = st.session_state["compare"]
state.setting("w.cmp.n", "cmp", 2, lambda v: max(2, min(4, len(_valid_variants(v)) + 1)))
n = st.radio("Scenarios", [2, 3, 4], key="w.cmp.n", horizontal=True)

cols = st.columns(n)
scenarios, variants = [base], []
with cols[0]:
    st.subheader("A")
    wl = base["workload"]
    model = base["model"] if isinstance(base["model"], str) else "config.json model"
    gpu = base["hardware"]["gpu"] if isinstance(base["hardware"]["gpu"], str) else "custom GPU"
    st.caption(f"the sidebar's scenario: {model} on {base['hardware']['num_gpus']}× {gpu}, {wl['phase']}, "
               f"batch {wl['batch_size']}")
for i in range(1, n):
    with cols[i]:
        st.subheader(LETTERS[i])
        old = variants_old[i - 1] if i - 1 < len(variants_old) else DEFAULT_VARIANTS[i - 1]
        ov = variant_editor(i, base, old)
        variants.append(ov)
        scenarios.append(state.with_overrides(base, ov))
st.session_state["compare"] = variants + variants_old[len(variants):]
state.sync_url({"cmp": variants})
if problem:
    st.error(problem)
    st.stop()

preds = []
for i, sc in enumerate(scenarios):
    pred, err = state.attempt(state.cached_predict, sc)
    if err:
        cols[i].error(err)
    preds.append(pred)
if preds[0] is None:
    st.stop()

table = {LETTERS[0]: {k: v[0] for k, v in rows(preds[0]).items()}}
numbers = {LETTERS[0]: {k: v[1] for k, v in rows(preds[0]).items()}}
base_rows = rows(preds[0])
for i, pred in enumerate(preds[1:], start=1):
    letter = LETTERS[i]
    if pred is None:
        table[letter] = {k: "-" for k in base_rows}
        continue
    r = rows(pred)
    table[letter] = {k: r[k][0] for k in base_rows if k in r}
    table[f"Δ {letter} vs A"] = {k: delta(r[k][1], base_rows[k][1]) if k in r and r[k][1] is not None else ""
                                for k in base_rows}
    numbers[letter] = {k: r[k][1] for k in base_rows if k in r}
frame = pd.DataFrame(table)
st.dataframe(frame, key="cmp.table")
st.download_button("Download CSV", pd.DataFrame(numbers).to_csv(), file_name="compare.csv", mime="text/csv",
                   key="csv.compare")

ok = [(LETTERS[i], p) for i, p in enumerate(preds) if p is not None]
left, right = st.columns(2)
names = [f"{LETTERS[i]}: {difference(base, variants[i - 1]) if i else 'the sidebar'}"
         for i, p in enumerate(preds) if p is not None]
lat = go.Figure(go.Bar(x=names, y=[(p.tpot_s or p.latency_s) * 1e3 for _, p in ok],
                       text=[seconds(p.tpot_s or p.latency_s) for _, p in ok]))
lat.update_layout(title="TPOT (ms)" if base["workload"]["phase"] == "generate" else "step latency (ms)", height=320,
                  margin=dict(l=10, r=10, t=40, b=10))
left.plotly_chart(lat, key="fig.cmp.lat")
thr = go.Figure(go.Bar(x=names, y=[p.tokens_per_s for _, p in ok], text=[rate(p.tokens_per_s) for _, p in ok],
                       marker_color="#2ca02c"))
thr.update_layout(title="throughput (tokens/s)", height=320, margin=dict(l=10, r=10, t=40, b=10))
right.plotly_chart(thr, key="fig.cmp.thr")
with st.expander("Scenarios as JSON"):
    st.json({LETTERS[i]: sc for i, sc in enumerate(scenarios)}, expanded=False)
