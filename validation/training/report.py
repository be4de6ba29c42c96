"""Re-predict recorded training steps with ``simulator.train`` and summarise the errors (no GPU needed).

``repredict(raw)`` takes the ``steps`` of a ``validation.training.run`` file (each a model, precision,
recompute, micro-batch and sequence length with its measured median step time and
``torch.cuda.max_memory_allocated`` peak) and predicts each on the recorded GPU with the given profile.
The measured time is the CUDA-graph replay of the whole step (``graph_step_time_s``: the fused step
without host launch gaps, what roofsim prices), or the eager step where no graph was captured (older
files, or a graph that did not fit next to the eager step's memory; the row says which);
``summary`` gives the median and p90 of |predicted / measured - 1| for time and peak memory; ``markdown``
the table for docs/validation.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from simulator.training.api import train


def predict_case(case: dict[str, Any], gpu: str, calibration: str = "auto"):
    return train(model=case["spec"], gpu=gpu, precision=case["precision"], recompute=case["recompute"],
                 micro_batch=case["micro_batch"], seq_len=case["seq_len"], calibration=calibration,
                 memory_utilization=1.0)


def repredict(raw: dict[str, Any] | str | Path, calibration: str = "auto") -> list[dict[str, Any]]:
    if not isinstance(raw, dict):
        raw = json.loads(Path(raw).read_text())
    gpu = raw["environment"]["catalog_name"]
    rows = []
    for case in raw["steps"]:
        r = predict_case(case, gpu, calibration)
        row = {k: case[k] for k in ("model", "precision", "recompute", "micro_batch", "seq_len")}
        graph = case.get("graph_step_time_s")
        measured = graph or case.get("step_time_s")
        row.update(measured_s=measured, timing="graph" if graph else "eager", eager_s=case.get("step_time_s"),
                   predicted_s=r.step_time_s, measured_bytes=case.get("peak_bytes"),
                   predicted_bytes=r.memory.total_bytes, measured_fits=case["fits"], predicted_fits=r.memory.fits)
        if measured:
            row["time_err"] = r.step_time_s / measured - 1.0
            row["memory_err"] = r.memory.total_bytes / case["peak_bytes"] - 1.0
        rows.append(row)
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = {"n": sum(1 for r in rows if "time_err" in r),
           "fits_agree": sum(1 for r in rows if r["measured_fits"] == r["predicted_fits"]), "cases": len(rows)}
    for key in ("time_err", "memory_err"):
        a = np.abs([r[key] for r in rows if key in r])
        out[key] = {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)), "max": float(a.max()),
                    "bias": float(np.median([r[key] for r in rows if key in r]))}
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | precision | recompute | micro-batch | seq | eager ms | measured ms | predicted ms | time err | "
             "measured GB | predicted GB | memory err |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "time_err" not in r:
            lines.append(f"| {r['model']} | {r['precision']} | {r['recompute']} | {r['micro_batch']} | {r['seq_len']} "
                         f"| | out of memory | fits: {r['predicted_fits']} | | | | |")
            continue
        how = "" if r["timing"] == "graph" else " (eager)"
        lines.append(f"| {r['model']} | {r['precision']} | {r['recompute']} | {r['micro_batch']} | {r['seq_len']} | "
                     f"{r['eager_s'] * 1e3:.1f} | {r['measured_s'] * 1e3:.1f}{how} | {r['predicted_s'] * 1e3:.1f} | "
                     f"{r['time_err']:+.1%} | "
                     f"{r['measured_bytes'] / 1e9:.1f} | {r['predicted_bytes'] / 1e9:.1f} | {r['memory_err']:+.1%} |")
    return "\n".join(lines)
