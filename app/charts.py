"""Plotly figures of the long-context, sweep and calibration pages (values come straight from the
API's arrays; nothing is computed here beyond picking and labelling)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.fmt import count, seconds, size

LONG_CONTEXT_PANELS = (
    ("prefill_s", "Prefill time of one request (s)", "FLOP/s bound"),
    ("max_concurrency", "Max concurrent users", "HBM size bound"),
    ("decode_step_s", "Decode step latency (s)", "HBM bandwidth bound"),
    ("context_switch_s", "Context-switch time (s)", "host-link bound"),
)
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


# --- log axes with tick labels a person reads ----------------------------------------------------

def tokens(value: float) -> str:
    """A token count as binary K/M (1K = 1,024 tokens, as context lengths are quoted: 128K, 1M)."""
    for unit, scale in (("M", 2**20), ("K", 2**10)):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.0f}"


def _finite(values) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    return arr[np.isfinite(arr) & (arr > 0)]


def power_ticks(values, label, base: int = 10, most: int = 9) -> dict:
    """A log axis with one labelled tick per power of ``base`` over the data (every k-th when many),
    labels written by ``label`` (``seconds``, ``size``, ``tokens``...) instead of plotly's 2/5 minor digits."""
    data = _finite(values)
    if data.size == 0:
        return dict(type="log")
    lo, hi = np.floor(np.log(data.min()) / np.log(base)), np.ceil(np.log(data.max()) / np.log(base))
    powers = np.arange(lo, hi + 1)
    step = int(np.ceil(len(powers) / most))
    vals = [float(base ** p) for p in powers[::step]]
    return dict(type="log", tickvals=vals, ticktext=[label(v) for v in vals])


def tick_seconds(value: float) -> str:
    """Seconds for a tick: 1 us, 10 ms, 1 s, 1,000 s (no exponents)."""
    return f"{value:,.0f} s" if value >= 1000 else seconds(value)


def value_label(key: str):
    """The formatter of an output named ``key``: seconds for ``*_s``, bytes for ``*_bytes``, else a count."""
    if key.endswith("_s") and key != "tokens_per_s":
        return tick_seconds
    if key.endswith("_bytes"):
        return size
    return count


TOKEN_AXES = ("context_len", "prompt_len", "output_len", "batch_size")


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
    contexts = np.concatenate([np.asarray(t["context_len"], dtype=float) for t in tables.values()])
    fig.update_xaxes(title="context length (tokens)", **power_ticks(contexts, tokens, base=2))
    for j, (key, _, _) in enumerate(LONG_CONTEXT_PANELS):
        row, col = divmod(j, 2)
        ys = [np.asarray(t[k], dtype=float) for t in tables.values()
              for k in ((key, "decode_step_full_batch_s") if key == "decode_step_s" else (key,))]
        fig.update_yaxes(**power_ticks(np.concatenate(ys), count if key == "max_concurrency" else tick_seconds),
                         row=row + 1, col=col + 1)
    fig.update_layout(height=640, margin=dict(l=10, r=10, t=60, b=10), legend=dict(orientation="h", y=-0.12))
    return fig


def sweep_lines(x, series: dict[str, np.ndarray], fits: dict[str, np.ndarray], x_title: str, y_title: str,
                log_x: bool, log_y: bool, categorical_x: bool = False, x_label=tokens, y_label=count) -> go.Figure:
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
        fig.update_xaxes(**(power_ticks(x, x_label, base=2) if log_x else dict(type="linear")))
    fig.update_xaxes(title=x_title)
    ys = np.concatenate([np.asarray(y, dtype=float).ravel() for y in series.values()])
    fig.update_yaxes(**(power_ticks(ys, y_label) if log_y else dict(type="linear")), title=y_title)
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
    fig.update_xaxes(title=f"{latency_label} (ms)",
                     **power_ticks(np.asarray(latency_s, dtype=float) * 1e3, lambda v: f"{v:g} ms"))
    fig.update_yaxes(title="throughput (tokens/s)", **power_ticks(tokens_per_s, count))
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
