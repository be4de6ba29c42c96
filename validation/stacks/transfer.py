"""Transfer error (a measured profile carried to another GPU of its family) and the residuals behind the
error bands of the shipped profiles, from the measurements kept in ``validation/results/`` (no GPU).

``python -m validation.stacks.transfer`` re-predicts every kernel and end-to-end step measured on each
GPU with (a) that GPU's own profile, (b) the other GPU's profile carried over by datasheet ratios
(``transfer:<gpu>``, ``simulator.stacks.resolve.transfer_profile``), (c) the other GPU's profile as it is
(no shift) and (d) ``default``; prints the error table and writes the log residuals
(log(measured / predicted)) per profile and phase, with the shapes they cover, to
``simulator/stacks/data/base_residuals.json`` (what ``simulator.stacks.bands`` reads). A GPU whose
training steps were measured (``<gpu>.training*.json``: ``validation.training.run``, in sample and held
out) also gets a ``train`` phase: those steps' CUDA-graph replays re-predicted with its own profile.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from hwmodels import get_accelerator, load_profile
from simulator.api import predict
from simulator.stacks.resolve import transfer_profile
from validation.training.report import repredict
from validation.validate import _scenario, kernel_summary

RESULTS = Path(__file__).resolve().parents[1] / "results"
OUT = Path(__file__).resolve().parents[2] / "simulator" / "stacks" / "data" / "base_residuals.json"
PAIRS = (("h100-sxm", "h200-sxm"), ("h200-sxm", "h100-sxm"))


def _stats(errors) -> dict[str, float]:
    e = np.abs(np.asarray(errors, dtype=float))
    return {"n": int(e.size), "median": float(np.median(e)), "p90": float(np.percentile(e, 90)), "max": float(e.max())}


def e2e_errors(gpu: str, calibration) -> dict[str, list[tuple[dict, float]]]:
    data = json.loads((RESULTS / f"{gpu}.validation.json").read_text())
    out: dict[str, list] = {"prefill": [], "decode": []}
    for row in data["e2e"]:
        if "time_s" not in row:
            continue
        sc = _scenario(row["spec"], gpu, calibration, row["phase"], row["batch"], row["length"])
        out[row["phase"]].append((row, predict(sc).latency_s / row["time_s"] - 1.0))
    return out


def kernel_errors(gpu: str, profile) -> dict:
    data = json.loads((RESULTS / f"{gpu}.validation.json").read_text())
    rows = [dict(r) for r in data["kernels"]["rows"] if "measured_s" in r]
    return kernel_summary(rows, profile, load_profile("default"), get_accelerator(gpu))["summary"]["all"]["calibrated"]


def _residuals(errs: dict[str, list]) -> dict:
    out = {}
    for phase, rows in errs.items():
        tokens = [r["batch"] * (r["length"] if phase == "prefill" else 1) for r, _ in rows]
        ctx = [r["length"] for r, _ in rows]
        out[phase] = {"log_residuals": [round(-math.log1p(e), 5) for _, e in rows],
                      "log10_tokens": [math.log10(min(tokens)), math.log10(max(tokens))],
                      "log10_context": [math.log10(min(ctx)), math.log10(max(ctx))]}
    return out


def train_residuals(gpu: str) -> dict | None:
    """The ``train`` phase of ``gpu``'s own profile: every measured training step replayed in a CUDA graph
    (the step roofsim prices), re-predicted; tokens are micro-batch x sequence, context the sequence."""
    rows = [r for path in sorted(RESULTS.glob(f"{gpu}.training*.json")) for r in repredict(path)
            if "time_err" in r and r["timing"] == "graph"]
    if not rows:
        return None
    tokens = [r["micro_batch"] * r["seq_len"] for r in rows]
    seq = [r["seq_len"] for r in rows]
    return {"log_residuals": [round(-math.log1p(r["time_err"]), 5) for r in rows],
            "log10_tokens": [math.log10(min(tokens)), math.log10(max(tokens))],
            "log10_context": [math.log10(min(seq)), math.log10(max(seq))]}


def _pool(*parts: dict) -> dict:
    out: dict = {}
    for part in parts:
        for phase, d in part.items():
            o = out.setdefault(phase, {"log_residuals": [], "log10_tokens": [9.9, -9.9], "log10_context": [9.9, -9.9]})
            o["log_residuals"] += d["log_residuals"]
            for key in ("log10_tokens", "log10_context"):
                o[key] = [min(o[key][0], d[key][0]), max(o[key][1], d[key][1])]
    return out


def main() -> None:
    table, residuals = [], {}
    defaults, peaks, transfers = [], [], []
    for src, tgt in PAIRS:
        src_prof = load_profile(src)
        carried = transfer_profile(src_prof, get_accelerator(src), get_accelerator(tgt))
        as_is = src_prof.model_copy(update={"device": tgt, "name": f"{src} as is"})
        for label, calib, prof in (("own", "auto", load_profile(tgt)), (f"{src} carried", f"transfer:{src}", carried),
                                   (f"{src} as is", as_is.model_dump(mode="json"), as_is),
                                   ("default", "default", load_profile("default"))):
            errs = e2e_errors(tgt, calib)
            k = kernel_errors(tgt, prof)
            table.append((tgt, label, k, {ph: _stats([e for _, e in rows]) for ph, rows in errs.items()}))
            if label == "own":
                residuals[tgt] = _residuals(errs)
                train = train_residuals(tgt)
                if train is not None:
                    residuals[tgt]["train"] = train
            elif label.endswith("carried"):
                transfers.append(_residuals(errs))
            elif label == "default":
                defaults.append(_residuals(errs))
        peaks.append(_residuals(e2e_errors(tgt, "peak")))
    residuals["transferred"] = _pool(*transfers)
    residuals["default"] = _pool(*defaults)
    residuals["peak"] = _pool(*peaks)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"command": "python -m validation.stacks.transfer",
                               "source": "validation/results/{h100-sxm,h200-sxm}.validation.json (end-to-end "
                                         "steps) and <gpu>.training*.json (training steps)",
                               "profiles": residuals}, indent=1) + "\n")
    print("| measured on | profile | kernels median / p90 | prefill median / p90 / max | decode median / p90 / max |")
    print("|---|---|---|---|---|")
    for tgt, label, k, ph in table:
        p, d = ph["prefill"], ph["decode"]
        print(f"| {tgt} | {label} | {k['median']:.1%} / {k['p90']:.1%} | {p['median']:.1%} / {p['p90']:.1%} / "
              f"{p['max']:.1%} | {d['median']:.1%} / {d['p90']:.1%} / {d['max']:.1%} |")


if __name__ == "__main__":
    main()
