"""Reports of a validation run: a Markdown table, a plotly HTML page and the JSON they come from."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

def _pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.1f}%"


def _abs_pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ms(x) -> str:
    return "-" if x is None else (f"{x * 1e3:.3f}" if x < 0.01 else f"{x * 1e3:.2f}")


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [f"# roofsim validate: {env.get('device_name', '?')} ({result['gpu']})", "",
             f"Profile `{result['profile']}` (engines: {result['engines']}); default = the uncalibrated `default` "
             f"profile. Error = predicted / measured - 1.", "",
             f"Driver {env.get('driver')}, CUDA {env.get('cuda')}, torch {env.get('torch')}, triton {env.get('triton')}, "
             f"{env.get('date')}; validate took {result['run_time_s']['total']:.0f} s.", ""]
    ks = result["kernels"]["summary"]
    lines += ["## Kernel level (shapes off the calibration grid)", "",
              "| kind | n | median abs err | p90 | max | default: median | default: p90 |",
              "|---|---|---|---|---|---|---|"]
    for kind, s in ks.items():
        c, d = s["calibrated"], s["default"]
        if not c.get("n"):
            continue
        lines.append(f"| {kind} | {c['n']} | {_abs_pct(c['median'])} | {_abs_pct(c['p90'])} | {_abs_pct(c['max'])} "
                     f"| {_abs_pct(d['median'])} | {_abs_pct(d['p90'])} |")
    es = result["e2e_summary"]
    lines += ["", "## End to end (one step)", "",
              "| profile | phase | n | median abs err | p90 | max | median signed |", "|---|---|---|---|---|---|---|"]
    for label in ("calibrated", "default", "peak"):
        for phase in ("prefill", "decode", "all"):
            s = es[label][phase]
            if not s.get("n"):
                continue
            lines.append(f"| {label} | {phase} | {s['n']} | {_abs_pct(s['median'])} | {_abs_pct(s['p90'])} | "
                         f"{_abs_pct(s['max'])} | {_pct(s['bias'])} |")
    models = sorted({r["model"] for r in result["e2e"]})
    lines += ["", "By model (median / p90 / max absolute error):", "",
              "| model | phase | n | calibrated | default |", "|---|---|---|---|---|"]
    for key in [f"{m} {ph}" for m in models for ph in ("prefill", "decode")] + ["dense prefill", "dense decode"]:
        c, d = es["calibrated"].get(key, {}), es["default"].get(key, {})
        if not c.get("n"):
            continue
        name, phase = key.rsplit(" ", 1)
        lines.append(f"| {'dense models (GQA + MHA)' if name == 'dense' else name} | {phase} | {c['n']} | "
                     f"{_abs_pct(c['median'])} / {_abs_pct(c['p90'])} / {_abs_pct(c['max'])} | "
                     f"{_abs_pct(d['median'])} / {_abs_pct(d['p90'])} / {_abs_pct(d['max'])} |")
    lines += ["", "| model | phase | batch | tokens | measured ms | calibrated ms | error | default ms | error |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in result["e2e"]:
        length = f"{r['length']} {'prompt' if r['phase'] == 'prefill' else 'context'}"
        lines.append(f"| {r['model']} ({r['type']}, {r['layers']} layers) | {r['phase']} | {r['batch']} | {length} | "
                     f"{_ms(r.get('time_s'))} | {_ms(r.get('calibrated_s'))} | {_pct(r.get('calibrated_error'))} | "
                     f"{_ms(r.get('default_s'))} | {_pct(r.get('default_error'))} |")
    moe = result.get("moe_breakdown") or []
    if moe:
        names = list(moe[0]["measured_s"])
        lines += ["", "## MoE layer, piece by piece (us per layer, measured alone in a CUDA graph / modelled)", "",
                  "| tokens | " + " | ".join(names) + " | sum |", "|---" * (len(names) + 2) + "|"]
        for r in moe:
            by_piece = r.get("predicted_by_piece_s", {})
            cells = [f"{r['measured_s'][n] * 1e6:.1f} / " + (f"{by_piece[n] * 1e6:.1f}" if n in by_piece else "-")
                     for n in names]
            lines.append(f"| {r['tokens']} | " + " | ".join(cells) + f" | {r['measured_total_s'] * 1e6:.1f} / "
                         f"{r['predicted_total_s'] * 1e6:.1f} |")
    errs = [r for r in result["e2e"] if "error" in r]
    if errs:
        lines += ["", "Failed cases: " + "; ".join(f"{r['model']} {r['phase']} {r['batch']}x{r['length']}: {r['error']}"
                                                  for r in errs)]
    return "\n".join(lines) + "\n"


def html(result: dict[str, Any]) -> str:
    md = markdown(result)
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        import html as h

        return f"<html><body><pre>{h.escape(md)}</pre></body></html>\n"
    fig = make_subplots(rows=1, cols=2, subplot_titles=("End to end: predicted vs measured step time",
                                                         "Kernels: predicted vs measured launch time"))
    e2e = [r for r in result["e2e"] if "time_s" in r]
    for label, color in (("calibrated", "#1f77b4"), ("default", "#ff7f0e")):
        fig.add_trace(go.Scatter(
            x=[r["time_s"] * 1e3 for r in e2e], y=[r[f"{label}_s"] * 1e3 for r in e2e], mode="markers",
            name=f"e2e, {label}", marker={"color": color, "size": 9},
            text=[f"{r['model']} {r['phase']} b={r['batch']} n={r['length']}: {_pct(r[f'{label}_error'])}" for r in e2e],
            hoverinfo="text"), row=1, col=1)
    kr = [r for r in result["kernels"]["rows"] if "measured_s" in r]
    for label, color in (("predicted_s", "#1f77b4"), ("default_s", "#ff7f0e")):
        fig.add_trace(go.Scatter(
            x=[r["measured_s"] * 1e6 for r in kr], y=[r[label] * 1e6 for r in kr], mode="markers",
            name=f"kernels, {'calibrated' if label == 'predicted_s' else 'default'}",
            marker={"color": color, "size": 6, "symbol": "diamond"},
            text=[f"{r['kind']}/{r['op']} {r['shape']}" for r in kr], hoverinfo="text"), row=1, col=2)
    for col, vals in ((1, [r["time_s"] * 1e3 for r in e2e]), (2, [r["measured_s"] * 1e6 for r in kr])):
        if vals:
            lo, hi = min(vals) / 2, max(vals) * 2
            fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"dash": "dot", "color": "gray"},
                                     showlegend=False), row=1, col=col)
    fig.update_xaxes(type="log", title_text="measured ms", row=1, col=1)
    fig.update_yaxes(type="log", title_text="predicted ms", row=1, col=1)
    fig.update_xaxes(type="log", title_text="measured us", row=1, col=2)
    fig.update_yaxes(type="log", title_text="predicted us", row=1, col=2)
    fig.update_layout(height=560, width=1200, title=f"roofsim validate on {result['environment'].get('device_name')}")
    import html as h

    return ("<html><head><meta charset='utf-8'><title>roofsim validate</title></head><body>"
            + fig.to_html(full_html=False, include_plotlyjs="cdn")
            + f"<pre>{h.escape(md)}</pre></body></html>\n")


def write_reports(result: dict[str, Any], outdir: str | Path) -> Path:
    """Write ``validation.json``, ``validation.md`` and ``validation.html`` into ``outdir``."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "validation.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    (outdir / "validation.md").write_text(markdown(result))
    (outdir / "validation.html").write_text(html(result))
    return outdir
