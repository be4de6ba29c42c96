"""Fit the training kinds of a profile to ``validation.training.kernels`` measurements (no GPU needed).

Each kind's points carry the FLOPs and bytes the cost model assigns to the launch, so the fitted curves
(``validation.fit.fit_kind``) price exactly those operators. The peaks are the ones the simulator prices
each kind against: bf16 tensor cores for the backward GEMMs and attention, fp32 for the optimizer step
and the fp32 cross-entropy, and the HBM bandwidth for all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hwmodels import get_accelerator
from validation.calibrate import dumps
from validation.fit import fit_kind

TRAINING_KINDS = {  # kind -> (peak dtype, basis)
    "gemm_dgrad": ("bf16", "dX = dY @ W (nn.Linear layout), bf16 cuBLAS via torch.matmul"),
    "gemm_wgrad": ("bf16", "dW = dY^T @ X, bf16 cuBLAS via torch.matmul"),
    "attention_backward": ("bf16", "causal scaled_dot_product_attention backward (FlashAttention/cuDNN), "
                                   "FLOPs 2.5x forward, bytes 2x"),
    "optimizer": ("fp32", "torch.optim.AdamW(fused=True) over bf16 and fp32 parameters"),
    "cross_entropy": ("fp32", "cross_entropy(logits.float()) forward and backward to bf16 logits"),
}


# The attention backward is timed through ``torch.autograd.grad``, whose Python-side graph walk (~150 us)
# is no part of a backward pass inside a model: its launch overhead is taken as the forward attention's.
FIXED_OVERHEAD = {"attention_backward": lambda kinds: kinds["attention_prefill"]["overhead_s"]}


def fit_training_kinds(points: list[dict[str, Any]], gpu_name: str,
                       profile_kinds: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """``{kind: KindEfficiency JSON}`` for every training kind with measurements (``profile_kinds``: the
    profile's existing kinds, for overheads taken from a forward kind)."""
    profile_kinds = profile_kinds or {}
    gpu = get_accelerator(gpu_name)
    kinds = {}
    for kind, (dtype, basis) in TRAINING_KINDS.items():
        pts = [p for p in points if p["kind"] == kind and p.get("time_s")]
        if not pts:
            continue
        fixed = FIXED_OVERHEAD.get(kind)
        fit = fit_kind([p["flops"] for p in pts], [p["bytes"] for p in pts], [p["time_s"] for p in pts],
                       gpu.peak_for(dtype), gpu.hbm_bandwidth_bytes_per_s,
                       fixed_overhead=None if fixed is None else fixed(profile_kinds))
        stats = fit.stats
        kinds[kind] = fit.kind_efficiency(f"{basis}; fitted to {stats['points']} points, median |err| "
                                          f"{stats['median_abs_err']:.1%}, p90 {stats['p90_abs_err']:.1%}")
    return kinds


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
