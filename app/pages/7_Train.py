"""Train: one training step of a model on a cluster — the step-time breakdown, the per-GPU memory stack
against capacity, and the days to train — via ``simulator.train``. Every setting lives in the URL."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app import state
from app.fmt import percent, rate, seconds, size
from hwmodels import list_accelerators
from simulator import list_models, train

st.set_page_config(page_title="roofsim · Train", layout="wide")
state.enter_page("train")

CHOICES = {
    "zero": [0, 1, 2, 3], "recompute": ["none", "selective", "full"], "precision": ["bf16", "amp", "mixed", "fp8"],
    "optimizer": ["adamw", "sgd", "adafactor"], "offload": ["none", "optimizer", "params"],
}
NUMBERS = {  # field -> (label, default, max)
    "num_gpus": ("GPUs", 8, 1_000_000), "tp": ("TP", 1, 64), "pp": ("PP", 1, 1024), "seq_len": ("Sequence", 4096, 10**7),
    "micro_batch": ("Micro-batch", 1, 4096), "global_batch": ("Global batch (sequences)", 64, 10**8),
}
DEFAULTS = {"model": "llama-3.1-8b", "gpu": "h100-sxm", "zero": 1, "recompute": "selective", "precision": "mixed",
            "optimizer": "adamw", "offload": "none", "tokens": 1e12, **{k: v[1] for k, v in NUMBERS.items()}}
MEMORY_TERMS = ["weights_bytes", "gradient_bytes", "optimizer_bytes", "activation_bytes", "loss_bytes",
                "bucket_bytes", "workspace_bytes"]


def _in(options):
    def cast(value):
        value = type(options[0])(value)  # URL values arrive as text
        if value not in options:
            raise ValueError("not a choice")
        return value
    return cast


def _positive(value) -> int:
    if int(value) < 1:
        raise ValueError("not positive")
    return int(value)


state.setting("w.tr.model", "tr.model", DEFAULTS["model"], _in(list_models()))
state.setting("w.tr.gpu", "tr.gpu", DEFAULTS["gpu"], _in(list_accelerators()))
for field, options in CHOICES.items():
    state.setting(f"w.tr.{field}", f"tr.{field}", DEFAULTS[field], _in(options))
for field in NUMBERS:
    state.setting(f"w.tr.{field}", f"tr.{field}", DEFAULTS[field], _positive)
state.setting("w.tr.tokens", "tr.tokens", DEFAULTS["tokens"], lambda v: float(v) if float(v) > 0 else 1 / 0)

st.title("Train")
st.caption("A training step: forward, backward, recompute, loss, gradient reduction and optimizer, per GPU "
           "(docs/training.md has every formula).")
with st.sidebar:
    st.header("Training")
    fields = {"model": st.selectbox("Model", list_models(), key="w.tr.model"),
              "gpu": st.selectbox("GPU", list_accelerators(), key="w.tr.gpu")}
    for field, (label, _, hi) in NUMBERS.items():
        fields[field] = int(st.number_input(label, min_value=1, max_value=hi, step=1, key=f"w.tr.{field}"))
    for field, options in CHOICES.items():
        fields[field] = st.selectbox(field.replace("_", " ").capitalize(), options, key=f"w.tr.{field}")
    fields["tokens"] = float(st.number_input("Tokens to train on", min_value=1.0, max_value=1e16, key="w.tr.tokens",
                                             format="%.3g"))
state.sync_url({f"tr.{k}": v for k, v in fields.items()})

report = state.or_stop(train, **fields)
m = report.memory
c = st.columns(5)
c[0].metric("Step time", seconds(report.step_time_s))
c[1].metric("Throughput", rate(report.tokens_per_s))
c[2].metric("MFU · HFU", f"{percent(report.mfu)} · {percent(report.hfu)}")
c[3].metric("Memory / GPU", f"{size(m.total_bytes + m.workspace_bytes)} of {size(m.capacity_bytes)}",
            "fits" if m.fits else "does not fit", delta_color="normal" if m.fits else "inverse")
c[4].metric("Days to train", f"{report.time_to_train_s / 86400:,.1f}")
st.caption(f"dp={report.dp}, {report.microbatches} micro-batches per step, bound: {report.bound}; "
           f"{report.gpu_hours:,.0f} GPU-hours for {fields['tokens']:.3g} tokens.")

left, right = st.columns(2)
terms = {k: v for k, v in report.breakdown.items() if v > 0}
left.plotly_chart(go.Figure(go.Bar(x=list(terms.values()), y=list(terms), orientation="h"),
                            layout={"title": "Step time by resource (s)", "height": 360}), key="fig.train.time")
stack = go.Figure([go.Bar(name=k.removesuffix("_bytes"), x=["per GPU"], y=[getattr(m, k) / 1e9]) for k in MEMORY_TERMS],
                  layout={"barmode": "stack", "title": "Memory stack (GB) against capacity", "height": 360})
stack.add_hline(y=m.capacity_bytes / 1e9, line_dash="dash", annotation_text="capacity")
right.plotly_chart(stack, key="fig.train.memory")
st.dataframe({"operator": [o.name for o in report.operators], "phase": [o.phase for o in report.operators],
              "kind": [o.kind for o in report.operators], "time": [seconds(o.time_s) for o in report.operators]},
             hide_index=True)
