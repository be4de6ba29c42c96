"""Plotly figures of one prediction: the roofline, where the time goes, and where the memory goes.

Every plotted value is a field of the ``Prediction`` (or a ratio of two), a datasheet number read
through ``hwmodels``, or a calibrated ceiling from ``simulator.metrics``.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.fmt import count, seconds, size
from simulator.metrics import calibrated_ceilings

BOUND_COLORS = {"compute": "#d62728", "memory": "#1f77b4", "communication": "#9467bd", "overhead": "#7f7f7f"}
PHASE_SYMBOLS = {"prefill": "diamond", "decode": "circle"}


def _layout(fig: go.Figure, **kwargs) -> go.Figure:
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2), **kwargs)
    return fig


def roofline_points(pred) -> list[dict]:
    """Operators with FLOPs and HBM bytes: intensity (FLOP/byte) and achieved FLOP/s."""
    points = []
    for op in pred.breakdown:
        if op.flops > 0 and op.bytes > 0 and op.time_s > 0:
            points.append({"name": op.name, "phase": op.phase, "count": op.count, "flops": op.flops,
                           "bytes": op.bytes, "time_s": op.time_s, "bound": op.bound,
                           "intensity": op.flops / op.bytes, "achieved": op.flops / op.time_s})
    return points


def roofline(pred, acc, profile, compute_dtype: str) -> go.Figure:
    c = calibrated_ceilings(acc, profile, compute_dtype)
    pts = roofline_points(pred)
    xs = [p["intensity"] for p in pts] or [1.0]
    lo = 10 ** np.floor(np.log10(min(min(xs), c["peak_flops"] / c["peak_bw"]) / 10))
    hi = 10 ** np.ceil(np.log10(max(max(xs), c["peak_flops"] / c["peak_bw"]) * 10))
    x = np.geomspace(lo, hi, 200)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=np.minimum(c["peak_flops"], c["peak_bw"] * x), mode="lines",
                             name=f"datasheet: {c['peak_flops'] / 1e12:,.0f} TFLOP/s ({compute_dtype}), "
                                  f"{c['peak_bw'] / 1e12:.2f} TB/s",
                             line=dict(color="black", width=2)))
    fig.add_trace(go.Scatter(x=x, y=np.minimum(c["cal_flops"], c["cal_bw"] * x), mode="lines",
                             name=f"calibrated ({profile.name}): {c['cal_flops'] / 1e12:,.0f} TFLOP/s, "
                                  f"{c['cal_bw'] / 1e12:.2f} TB/s",
                             line=dict(color="black", width=2, dash="dash")))
    top = max((p["time_s"] for p in pts), default=1.0)
    for phase in ("prefill", "decode"):
        for bound, color in BOUND_COLORS.items():
            sel = [p for p in pts if p["phase"] == phase and p["bound"] == bound]
            if not sel:
                continue
            fig.add_trace(go.Scatter(
                x=[p["intensity"] for p in sel], y=[p["achieved"] for p in sel], mode="markers",
                name=f"{bound}-bound ({phase})" if pred.phase == "generate" else f"{bound}-bound",
                marker=dict(color=color, symbol=PHASE_SYMBOLS[phase], opacity=0.75, line=dict(width=1, color="white"),
                            size=[8 + 40 * np.sqrt(p["time_s"] / top) for p in sel]),
                text=[p["name"] for p in sel],
                customdata=[[p["count"], seconds(p["time_s"]), count(p["flops"]), size(p["bytes"])] for p in sel],
                hovertemplate="<b>%{text}</b> ×%{customdata[0]}<br>time %{customdata[1]}<br>"
                              "FLOPs %{customdata[2]}, bytes %{customdata[3]}<br>"
                              "%{x:.3g} FLOP/byte, %{y:.3s}FLOP/s<extra></extra>",
            ))
    ys = [p["achieved"] for p in pts] + [c["peak_flops"]]
    decades = np.arange(np.floor(np.log10(min(min(ys), c["peak_bw"] * lo))), np.ceil(np.log10(max(ys) * 2)) + 1)
    fig.update_xaxes(type="log", title="arithmetic intensity (FLOP / HBM byte)")
    fig.update_yaxes(type="log", title="achieved FLOP/s (per GPU)", tickvals=10.0 ** decades,
                     ticktext=[f"{count(10.0 ** d)}FLOP/s" for d in decades])
    return _layout(fig, title="Roofline: each operator of the step (size = time)", height=460)


def operator_times(pred) -> go.Figure:
    """Time of each operator, one panel per phase (generate: the prefill, and the mean decode step)."""
    phases = [ph for ph in ("prefill", "decode") if any(o.phase == ph for o in pred.breakdown)]
    titles = [("prefill" if ph == "prefill" else "decode: mean step") if len(phases) > 1 else "" for ph in phases]
    fig = make_subplots(rows=1, cols=len(phases), subplot_titles=titles, horizontal_spacing=0.25)
    for col, phase in enumerate(phases, start=1):
        ops = sorted((o for o in pred.breakdown if o.phase == phase), key=lambda o: o.time_s)
        fig.add_trace(go.Bar(
            x=[o.time_s * 1e3 for o in ops], y=[o.name for o in ops], orientation="h", showlegend=False,
            marker_color=[BOUND_COLORS[o.bound] for o in ops],
            customdata=[[seconds(o.time_s), o.bound, o.count] for o in ops],
            hovertemplate="%{y}: %{customdata[0]} (%{customdata[1]}-bound, ×%{customdata[2]})<extra></extra>",
        ), row=1, col=col)
    fig.update_xaxes(title="time (ms)")
    rows = max(sum(o.phase == ph for o in pred.breakdown) for ph in phases)
    return _layout(fig, title="Time by operator (colour = bound)", height=max(320, 22 * rows + 100))


def resource_times(pred) -> go.Figure:
    r = pred.resources
    names = ["SM (compute)", "HBM", "link", "launch overhead"]
    values = [r.sm_s, r.hbm_s, r.link_s, r.overhead_s]
    fig = go.Figure(go.Bar(x=names, y=[v * 1e3 for v in values], text=[seconds(v) for v in values],
                           marker_color=[BOUND_COLORS[b] for b in BOUND_COLORS]))
    step = pred.ttft_s if pred.phase == "generate" else pred.latency_s
    fig.add_hline(y=step * 1e3, line_dash="dot", annotation_text=f"step {seconds(step)} ({pred.overlap})")
    fig.update_yaxes(title="busy time (ms)")
    title = "Busy time by resource" + (" (prefill step)" if pred.phase == "generate" else "")
    return _layout(fig, title=title, height=340)


def memory_parts(pred) -> list[tuple[str, float]]:
    m = pred.memory
    return [("weights", m.weights_bytes), ("KV cache", m.kv_cache_bytes), ("activations", m.activation_bytes),
            ("workspace", m.workspace_bytes), ("free", max(m.capacity_bytes - m.total_bytes, 0.0))]


def memory_bar(pred) -> go.Figure:
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#8c564b", "#e5e5e5"]
    fig = go.Figure()
    for (name, value), color in zip(memory_parts(pred), colors):
        fig.add_trace(go.Bar(x=[value / 1e9], y=["per GPU"], orientation="h", name=f"{name} {size(value)}",
                             marker_color=color, hovertemplate=f"{name}: {size(value)}<extra></extra>"))
    cap = pred.memory.capacity_bytes
    fig.add_vline(x=cap / 1e9, line_color="red" if not pred.memory.fits else "black", line_dash="dash",
                  annotation_text=f"usable {size(cap)}")
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title="GB")
    return _layout(fig, title="Memory per GPU" + ("" if pred.memory.fits else " — does not fit"), height=240)
