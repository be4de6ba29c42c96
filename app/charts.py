"""Plotly figures of the long-context, sweep and calibration pages (values come straight from the
API's arrays; nothing is computed here beyond picking and labelling)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.fmt import seconds

LONG_CONTEXT_PANELS = (
    ("prefill_s", "Prefill time of one request (s)", "FLOP/s bound"),
    ("max_concurrency", "Max concurrent users", "HBM size bound"),
    ("decode_step_s", "Decode step latency (s)", "HBM bandwidth bound"),
    ("context_switch_s", "Context-switch time (s)", "host-link bound"),
)
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def long_context(tables: dict[str, dict[str, np.ndarray]]) -> go.Figure:
    """The seed paper's four limits over context length; one line style per table (e.g. with/without)."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=[f"{t} — {b}" for _, t, b in LONG_CONTEXT_PANELS],
                        horizontal_spacing=0.08, vertical_spacing=0.16)
    dashes = ("solid", "dash", "dot")
    for i, (label, table) in enumerate(tables.items()):
        ctx = table["context_len"]
        for j, (key, title, _) in enumerate(LONG_CONTEXT_PANELS):
            row, col = divmod(j, 2)
            y = np.asarray(table[key], dtype=float)
            if key == "max_concurrency":
                y = np.where(y > 0, y, np.nan)  # zero users cannot sit on a log axis
            hover = f"{label}<br>context %{{x:,}}<br>{title}: %{{y:.4g}}<extra></extra>"
            fig.add_trace(go.Scatter(x=ctx, y=y, mode="lines+markers", name=f"{label}", legendgroup=label,
                                     showlegend=j == 0, line=dict(color=PALETTE[0], dash=dashes[i % 3]),
                                     hovertemplate=hover),
                          row=row + 1, col=col + 1)
            if key == "decode_step_s":
                fig.add_trace(go.Scatter(x=ctx, y=table["decode_step_full_batch_s"], mode="lines+markers",
                                         name=f"{label}: step at max users", legendgroup=label + "full",
                                         showlegend=True, line=dict(color=PALETTE[1], dash=dashes[i % 3]),
                                         hovertemplate="context %{x:,}<br>step at max users: %{y:.4g} s"
                                                       "<extra></extra>"),
                              row=row + 1, col=col + 1)
    fig.update_xaxes(type="log", title="context length (tokens)")
    fig.update_yaxes(type="log")
    fig.update_layout(height=640, margin=dict(l=10, r=10, t=60, b=10), legend=dict(orientation="h", y=-0.12))
    return fig


def sweep_lines(x, series: dict[str, np.ndarray], fits: dict[str, np.ndarray], x_title: str, y_title: str,
                log_x: bool, log_y: bool, categorical_x: bool = False) -> go.Figure:
    """One line per series; points that do not fit in memory are drawn hollow."""
    fig = go.Figure()
    for i, (name, y) in enumerate(series.items()):
        ok = np.asarray(fits[name], dtype=bool)
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=list(x), y=np.asarray(y, dtype=float), mode="lines+markers", name=name,
                                 line=dict(color=color),
                                 marker=dict(symbol=["circle" if f else "circle-open" for f in ok], size=8,
                                             color=color),
                                 customdata=np.where(ok, "fits", "does not fit"),
                                 hovertemplate=f"{name}<br>%{{x}}: %{{y:.4g}} (%{{customdata}})<extra></extra>"))
    if not categorical_x:
        fig.update_xaxes(type="log" if log_x else "linear")
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(type="log" if log_y else "linear", title=y_title)
    fig.update_layout(height=460, margin=dict(l=10, r=10, t=30, b=10),
                      title="hollow markers: does not fit in memory")
    return fig


def sweep_heatmap(x_labels, y_labels, z: np.ndarray, fits: np.ndarray, x_title: str, y_title: str,
                  z_title: str) -> go.Figure:
    text = np.where(np.asarray(fits, dtype=bool), "", "✗")
    fig = go.Figure(go.Heatmap(x=[str(v) for v in x_labels], y=[str(v) for v in y_labels], z=z, text=text,
                               texttemplate="%{text}", colorscale="Viridis", colorbar=dict(title=z_title),
                               hovertemplate=f"{x_title} %{{x}}<br>{y_title} %{{y}}<br>{z_title}: %{{z:.4g}}"
                                             "<extra></extra>"))
    fig.update_xaxes(title=x_title, type="category")
    fig.update_yaxes(title=y_title, type="category")
    fig.update_layout(height=460, margin=dict(l=10, r=10, t=30, b=10), title="✗: does not fit in memory")
    return fig


def throughput_latency(batch, latency_s, tokens_per_s, fits, latency_label: str) -> go.Figure:
    ok = np.asarray(fits, dtype=bool)
    fig = go.Figure()
    for mask, name, color in ((ok, "fits in memory", PALETTE[0]), (~ok, "does not fit", "#bbbbbb")):
        if mask.any():
            fig.add_trace(go.Scatter(
                x=np.asarray(latency_s)[mask] * 1e3, y=np.asarray(tokens_per_s)[mask], mode="lines+markers",
                name=name, line=dict(color=color), text=[f"batch {int(b)}" for b in np.asarray(batch)[mask]],
                hovertemplate="%{text}<br>%{x:.4g} ms, %{y:,.0f} tok/s<extra></extra>"))
    if ok.any() and (~ok).any():
        last = int(np.nonzero(ok)[0].max())
        fig.add_trace(go.Scatter(x=[latency_s[last] * 1e3], y=[tokens_per_s[last]], mode="markers+text",
                                 marker=dict(symbol="star", size=16, color="red"), name="memory limit",
                                 text=[f"memory limit: batch {int(batch[last])}"], textposition="top left",
                                 hovertemplate=f"largest batch that fits: {int(batch[last])}, "
                                               f"{seconds(latency_s[last])}<extra></extra>"))
    fig.update_xaxes(type="log", title=f"{latency_label} (ms)")
    fig.update_yaxes(type="log", title="throughput (tokens/s)")
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10), title="Throughput vs latency over batch size")
    return fig


def efficiency_curves(profile, raw: list[dict]) -> go.Figure:
    """Compute efficiency of the kernel kinds and memory efficiency of every kind over launch size, with
    raw points where the profile keeps them (transfers have no compute curve)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("compute: fraction of peak FLOP/s",
                                                         "memory / link: fraction of peak bandwidth"))
    for col, which in ((1, "compute"), (2, "memory")):
        kinds = [k for k in profile.kinds if which == "memory" or k not in ("collective", "host_transfer")]
        xs = [x for k in kinds for x in getattr(profile.kinds[k], which).log10_size]
        sizes = np.logspace(min(xs) - 1, max(xs) + 1, 160)
        for i, kind in enumerate(profile.kinds):
            if kind not in kinds:
                continue
            color = PALETTE[i % len(PALETTE)]
            curve = getattr(profile.kinds[kind], which)
            fig.add_trace(go.Scatter(x=sizes, y=curve(sizes), mode="lines", name=kind, legendgroup=kind,
                                     showlegend=col == 2, line=dict(color=color),
                                     hovertemplate=f"{kind} {which}<br>size %{{x:.3g}}: %{{y:.1%}}<extra></extra>"),
                          row=1, col=col)
            pts = [p for p in raw if p["kind"] == kind and p["resource"] == which]
            if pts:
                fig.add_trace(go.Scatter(x=[p["size"] for p in pts], y=[p["efficiency"] for p in pts],
                                         mode="markers", name=f"{kind} measured", legendgroup=kind,
                                         showlegend=False, marker=dict(color=color, size=6, opacity=0.6),
                                         hovertemplate=f"{kind} measured<br>%{{x:.3g}}: %{{y:.1%}}<extra></extra>"),
                              row=1, col=col)
    fig.update_xaxes(type="log")
    fig.update_xaxes(title="FLOPs per launch", row=1, col=1)
    fig.update_xaxes(title="bytes per launch", row=1, col=2)
    fig.update_yaxes(range=[0, max([1.05] + [1.05 * p["efficiency"] for p in raw])], tickformat=".0%")
    fig.update_layout(height=440, margin=dict(l=10, r=10, t=60, b=10), legend=dict(orientation="h", y=-0.2))
    return fig
