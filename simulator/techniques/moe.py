"""Mixture of experts: routing, load imbalance, expert parallelism, and MoE-CAP's sparse utilisation.

The step already reads, per MoE layer, only the experts a batch touches: under uniform top-k routing
the expected number of distinct experts hit by T tokens is E·(1 - (1 - k/E)^T)
(``costmodels.moe.expected_distinct_experts``). The ``moe`` technique changes the routing (top-k,
shared experts) and prices expert parallelism with a load-imbalance factor. MoE-CAP's S-MBU and
S-MFU are in ``simulator.metrics``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydantic import Field, PositiveInt

from hwmodels.profile import GEMM_KINDS
from simulator.techniques import Technique, register


@register
class MoE(Technique):
    """MoE routing and expert parallelism.

    ``top_k`` / ``shared_experts`` re-route the model (FLOPs per token ∝ top-k experts + shared ones;
    weight bytes per step ∝ distinct experts touched, E·(1 - (1 - k/E)^T)). With ``expert_parallel`` =
    tp, each GPU holds E/ep whole experts instead of a 1/tp slice of each: the same bytes, but the step
    waits for the busiest GPU, which gets ``load_imbalance`` x the mean routed tokens (max/mean tokens
    per GPU), so expert FLOPs and activation traffic take f times as long (the others wait; the work
    done, and so MFU, does not grow). Attention stays tensor-parallel, so tokens are already on every
    GPU and the outputs are combined by the same all-reduce. Expert degrees other than 1 or tp (with
    data-parallel attention and all-to-all dispatch) belong to the parallelism model."""

    name = "moe"
    family = "mixture of experts"
    citation = ("Jiang et al. 2024, MoE-CAP: Benchmarking Cost, Accuracy and Performance of Sparse Mixture-of-Experts "
                "Systems, arXiv 2412.07067; Lepikhin et al. 2020, GShard, arXiv 2006.16668")
    summary = "routing top-k and shared experts; expert parallelism priced at the busiest GPU (load imbalance)"

    top_k: PositiveInt | None = Field(None, description="experts per token; none = the model's")
    shared_experts: int | None = Field(None, ge=0, description="always-on shared experts; none = the model's")
    load_imbalance: float = Field(1.0, ge=1.0, description="max / mean routed tokens per GPU under expert parallelism")
    expert_parallel: PositiveInt = Field(1, description="GPUs experts are partitioned over: 1 (tensor-split) or tp")

    def apply_model(self, model):
        if model.moe is None:
            raise self.error("", f"{model.name} has no mixture-of-experts layers")
        update = {}
        if self.top_k is not None:
            if self.top_k > model.moe.num_experts:
                raise self.error("top_k", f"{self.top_k} exceeds num_experts={model.moe.num_experts}")
            update["top_k"] = self.top_k
        if self.shared_experts is not None:
            update["num_shared_experts"] = self.shared_experts
        return model.model_copy(update={"moe": model.moe.model_copy(update=update)}) if update else model

    def apply_deployment(self, dep):
        ep = self.expert_parallel
        if ep != 1 and np.any(np.asarray(dep.tp) != ep):
            raise self.error("expert_parallel", f"must be 1 or tp={int(np.max(dep.tp))}")
        if ep != 1 and dep.model.moe.num_experts % ep:
            raise self.error("expert_parallel", f"{ep} does not divide num_experts={dep.model.moe.num_experts}")
        return dep

    def apply_ops(self, ops, shape, dep):
        if self.expert_parallel == 1 or self.load_imbalance == 1.0:
            return ops
        f = self.load_imbalance
        out = []
        for op in ops:
            if "moe.expert." in op.name and op.kind in (*GEMM_KINDS, "memory"):
                # The busiest GPU does f x the mean FLOPs and activation traffic in the time the others
                # wait: priced as the mean work at 1/f of the rates, so FLOPs and bytes stay the work done.
                weights = np.asarray(getattr(op, "weight_bytes", 0.0), dtype=float)
                hbm = np.maximum(np.asarray(op.hbm_bytes, dtype=float), 1.0)
                slowdown = (weights + f * (hbm - weights)) / hbm
                op = replace(op, peak_flops_per_s=op.peak_flops_per_s / f,
                             hbm_bandwidth_bytes_per_s=op.hbm_bandwidth_bytes_per_s / slowdown)
            out.append(op)
        return out
