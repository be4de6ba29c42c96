"""Mixture of experts: routing, load imbalance, expert parallelism, and MoE-CAP's sparse utilisation.

The step already reads, per MoE layer, only the experts a batch touches: under uniform top-k routing
the expected number of distinct experts hit by T tokens is E·(1 - (1 - k/E)^T)
(``simulator.step.expected_distinct_experts``). The ``moe`` technique changes the routing (top-k,
shared experts) and prices expert parallelism with a load-imbalance factor. ``sparse_utilisation``
gives MoE-CAP's S-MBU and S-MFU, which count only the activated experts (Jiang et al. 2024,
arXiv 2412.07067; formulas of Auto-CAP/MoE-CAP ``moe_cap/utils/basic_utils.py``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydantic import Field, PositiveInt

from simulator.footprint import layer_kv_bytes
from simulator.step import expected_distinct_experts
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


def _mlp_params(model, kind: str, tokens):
    """Parameters of one layer's feed-forward part a batch of ``tokens`` reads, and one token uses."""
    if kind == "dense":
        dense = sum(lin.params for lin in model.dense_mlp_linears())
        return dense + 0.0 * tokens, dense
    moe = model.moe
    expert = sum(lin.params for lin in model.expert_linears())
    shared = sum(lin.params for lin in model.shared_expert_linears()) + model.router_linear().params
    touched = expected_distinct_experts(tokens, moe.num_experts, moe.top_k)
    return touched * expert + shared, moe.top_k * expert + shared


def sparse_utilisation(dep, batch, context, new_tokens, step_latency, phase: str):
    """MoE-CAP's S-MBU and S-MFU of one step of ``batch`` sequences, each adding ``new_tokens`` tokens
    after attending to ``context`` tokens.

    S-MBU = [Σ_layers (attention + activated experts' params) · bytes/param + KV bytes read] / latency /
    (n_gpu · peak bandwidth), with the activated experts the distinct ones the step's tokens touch.
    S-MFU = [2 · (attention + top-k experts + shared) params per token · L + attention FLOPs] x tokens /
    latency / (n_gpu · peak FLOP/s). Embedding and LM head are left out, as in MoE-CAP. Dense models
    reduce to the same formulas with their MLP as the one "expert"."""
    m = dep.model
    b = np.asarray(batch, dtype=float)
    tokens = b * np.asarray(new_tokens, dtype=float)
    attention = sum(lin.params for lin in m.attention_linears())
    read, used = 0.0 * tokens, 0.0
    for kind in m.mlp_kinds():
        r, u = _mlp_params(m, kind, tokens)
        read, used = read + attention + r, used + attention + u
    gpus = np.asarray(dep.tp, dtype=float) * dep.pp
    ctx = np.asarray(context, dtype=float)
    kv_read = b * layer_kv_bytes(dep, ctx) * gpus if phase == "decode" else 0.0 * b
    s_mbu = (read * dep.layer_weight_bytes + kv_read) / step_latency / (gpus * dep.hbm_bandwidth_bytes_per_s)
    q_dim, v_dim = m.q_dim, m.attn_out_dim
    span = ctx if phase == "decode" else (ctx + 1.0) / 2.0  # mean keys per query (causal prefill)
    attention_flops = 2.0 * (q_dim + v_dim) * m.num_layers * span
    s_mfu = (2.0 * used + attention_flops) * tokens / step_latency / (gpus * dep.peak_flops_per_s)
    return s_mbu, s_mfu
