"""Fit the training kinds of a profile to ``validation.training.kernels`` measurements (no GPU needed).

Each kind's points carry the FLOPs and bytes the cost model assigns to the launch, so the fitted curves
(``validation.fit.fit_kind``) price exactly those operators. The peaks are the ones the simulator prices
each kind against: bf16 tensor cores for the backward GEMMs and attention, fp32 for the optimizer step
and the fp32 cross-entropy, and the HBM bandwidth for all.

A GPU whose training kernels were never measured can carry another GPU's fitted training kinds
(:func:`transfer_training_kinds`) by the datasheet-ratio rule roofsim uses for GPUs without a measured
profile (``simulator.stacks.resolve.transfer_profile``: efficiencies kept as fractions of each GPU's own
peaks, compute curves moved along their size axis by the SM-count ratio, memory curves by the HBM
bandwidth ratio, per-launch overheads kept). Each carried kind's ``basis`` and the profile's
``measurements.training_kernels`` say that it was transferred, from where and by which rule:
``python -m validation.training.fit transfer hwmodels/profiles/h200-sxm.json hwmodels/profiles/h100-sxm.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hwmodels import get_accelerator
from validation.calibrate import dumps, transfer_kinds
from validation.fit import fit_kind

TRAINING_KINDS = {  # kind -> (peak dtype, basis)
    "gemm_dgrad": ("bf16", "dX = dY @ W (nn.Linear layout), bf16 cuBLAS via torch.matmul"),
    "gemm_wgrad": ("bf16", "dW = dY^T @ X, bf16 cuBLAS via torch.matmul"),
    "attention_backward": ("bf16", "causal scaled_dot_product_attention backward (FlashAttention/cuDNN), "
                                   "FLOPs 2.5x forward, bytes 2x, timed as forward+backward minus forward in "
                                   "CUDA graphs"),
    "optimizer": ("fp32", "torch.optim.AdamW(fused=True, capturable=True) in CUDA graphs over fp32 parameters "
                          "and states (equal chunks and the validation models' parameter lists)"),
    "optimizer_bf16": ("fp32", "torch.optim.AdamW(fused=True, capturable=True) in CUDA graphs over bf16 "
                               "parameters and states (equal chunks and the validation models' parameter lists)"),
    "cross_entropy": ("fp32", "cross_entropy(logits.float()) forward over bf16 logits, in CUDA graphs"),
    "cross_entropy_backward": ("fp32", "cross_entropy(logits.float()) backward to bf16 logits, timed as forward and "
                                       "backward minus forward in CUDA graphs"),
}


# The fixed cost of a graph-launched kernel is a few microseconds. The attention backward and the loss are
# timed as differences of graph replays and their smallest launches already run far below the peaks, so
# the fit's small-size asymptote would put that low efficiency into the overhead (tens of microseconds);
# their overhead is taken as the forward kind's per-launch overhead instead, and the curves carry the rest.
FIXED_OVERHEAD = {"attention_backward": "attention_prefill", "cross_entropy": "memory",
                  "cross_entropy_backward": "memory"}


def fit_training_kinds(points: list[dict[str, Any]], gpu_name: str,
                       profile_kinds: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{kind: KindEfficiency JSON}`` for every training kind with measurements (``profile_kinds``: the
    profile's forward kinds, whose overheads ``FIXED_OVERHEAD`` takes)."""
    gpu = get_accelerator(gpu_name)
    kinds = {}
    for kind, (dtype, basis) in TRAINING_KINDS.items():
        pts = [p for p in points if _fitted_kind(p) == kind and p.get("time_s")]
        if not pts:
            continue
        fixed = FIXED_OVERHEAD.get(kind)
        fit = fit_kind([p["flops"] for p in pts], [p["bytes"] for p in pts], [p["time_s"] for p in pts],
                       gpu.peak_for(dtype), gpu.hbm_bandwidth_bytes_per_s,
                       fixed_overhead=None if fixed is None else profile_kinds[fixed]["overhead_s"])
        stats = fit.stats
        kinds[kind] = fit.kind_efficiency(f"{basis}; fitted to {stats['points']} points, median |err| "
                                          f"{stats['median_abs_err']:.1%}, p90 {stats['p90_abs_err']:.1%}")
    return kinds


def _fitted_kind(point: dict[str, Any]) -> str:
    """The kind a measured point is fitted to: an optimizer step over bf16 parameters (2 bytes each, bf16
    states) and the loss's backward have their own curves."""
    if point["kind"] == "optimizer" and point.get("param_bytes") == 2.0:
        return "optimizer_bf16"
    if point["kind"] == "cross_entropy" and point.get("phase") == "backward":
        return "cross_entropy_backward"
    return point["kind"]


def merge_into_profile(profile_path: str | Path, raw_path: str | Path, out: str | Path | None = None) -> dict:
    """Add the fitted training kinds (and their raw points) to a profile JSON file."""
    profile = json.loads(Path(profile_path).read_text())
    raw = json.loads(Path(raw_path).read_text())
    kinds = fit_training_kinds(raw["kernels"], profile.get("device") or raw["environment"]["catalog_name"],
                               profile["kinds"])
    profile["kinds"].update(kinds)
    profile.setdefault("measurements", {})["training_kernels"] = {
        "date": raw["environment"]["date"], "points": len(raw["kernels"]), "raw": str(raw_path),
        "command": "roofsim calibrate --train (python -m validation.training.run on the GPU), then "
                   "roofsim calibrate --train-from RAW.json",
    }
    Path(out or profile_path).write_text(dumps(profile))
    return profile


def transfer_training_kinds(source_path: str | Path, target_path: str | Path, out: str | Path | None = None) -> dict:
    """Carry the training kinds fitted in the profile at ``source_path`` into the profile at ``target_path``
    (another GPU's), by ``simulator.stacks.resolve.transfer_profile``; labelled as transferred."""
    return transfer_kinds(source_path, target_path, TRAINING_KINDS, "training_kernels", "Training kinds",
                          f"python -m validation.training.fit transfer {source_path} {target_path}", out)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m validation.training.fit")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("transfer", help="carry a measured profile's training kinds to another GPU's profile")
    t.add_argument("source")
    t.add_argument("target")
    t.add_argument("--out")
    args = ap.parse_args(argv)
    transfer_training_kinds(args.source, args.target, args.out)
    print(f"training kinds of {args.source} carried into {args.out or args.target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
