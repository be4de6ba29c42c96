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

from simulator.techniques import Technique, register


@register
class MoE(Technique):
    """MoE routing and expert parallelism.

    ``top_k`` / ``shared_experts`` re-route the model (FLOPs per token ∝ top-k experts + shared ones;
    weight bytes per step ∝ distinct experts touched, E·(1 - (1 - k/E)^T)). ``expert_parallel`` = tp is
    ``parallelism.ep`` = tp: each GPU holds E/ep whole experts instead of a 1/tp slice of each. The
    bytes are the same but the GEMMs are not: each GPU runs its experts' full width over the ~T·k/ep rows
    routed to it (fewer, wider GEMMs at another point of the efficiency curves), and the step waits for
    the busiest GPU, which gets ``load_imbalance`` x the mean rows (FLOPs and activation traffic scale by
    it, weight reads do not). Attention stays tensor-parallel, so the tokens are already on every GPU and
    the outputs are combined by the same all-reduce. Other expert degrees (data-parallel attention and
    all-to-all dispatch) are ``parallelism.ep`` (``simulator.parallel.experts``), where ``load_imbalance``
    applies too. With experts split over tp (``expert_parallel`` = 1) every GPU runs a slice of every
    expert over all rows, so imbalance between experts changes no GPU's work and has no effect."""

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
        return replace(dep, ep=ep if ep != 1 else dep.ep, expert_load_imbalance=self.load_imbalance)
