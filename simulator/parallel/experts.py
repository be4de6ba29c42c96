"""Expert parallelism: how the routed experts of a MoE layer are spread over GPUs, and what each GPU
routes, receives and reads.

The MoE group is ep·etp GPUs (``simulator.parallel.placement``): ep shards of E/ep experts, each expert
split over etp GPUs (expert tensor parallelism). Two layouts follow from the attention's degrees:

* **replicated tokens** (ep·etp = tp·cp, e.g. vLLM's expert parallelism with TP attention): every GPU of
  the group already holds the layer's T tokens, so each runs its E/ep experts over the T·k/ep routed
  rows on average and the outputs are summed by the TP all-reduce that follows anyway. No all-to-all.
* **all-to-all** (the group joins edp > 1 attention data-parallel replicas, DeepSeek-V3's serving layout,
  arXiv 2412.19437 §3.4): each GPU routes its own T/(tp·cp) tokens, sends each token's hidden row to the
  shards of its k experts (dispatch) and gets the k expert outputs back (combine): each way a send buffer
  of T_own·k·h·bytes, (ep-1)/ep of it leaving the GPU (GShard, Lepikhin et al. 2020, arXiv 2006.16668;
  DeepSpeed-MoE, Rajbhandari et al. 2022, arXiv 2201.05596). A shard receives T_own·etp·k rows on average.

The step waits for the busiest GPU, which gets ``load_imbalance`` (max / mean) times the mean routed rows:
its grouped GEMMs' FLOPs and activation bytes scale by it, its weight reads do not. The weights read are
the distinct experts the group's tokens touch, E·(1 - (1 - k/E)^T), of which a shard holds 1/ep. With
ep = 1 (each expert split over tp GPUs) every GPU runs a slice of every expert over all routed rows:
imbalance between experts does not change any GPU's work, so it has no effect there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from costmodels import moe as moe_ops


@dataclass
class ExpertPlan:
    routed_tokens: np.ndarray  # tokens this GPU routes (router, top-k, sort)
    rows: np.ndarray  # (token, expert) rows into this GPU's grouped GEMMs, busiest GPU
    weight_copies: np.ndarray  # experts whose weights this GPU reads
    all_to_all: bool  # dispatch/combine as all-to-all over the ep group
    message_bytes: np.ndarray  # dispatch (and combine) send buffer per GPU
    gather_tp: bool  # outputs come back for this GPU's share only: all-gather over TP restores them


def expert_plan(dep, tokens) -> ExpertPlan:
    expected_distinct_experts = moe_ops.expected_distinct_experts
    moe = dep.model.moe
    e, k = moe.num_experts, moe.top_k
    t = np.asarray(tokens, dtype=float)
    f = dep.expert_load_imbalance if dep.ep > 1 else 1.0
    if dep.ep == 1:
        return ExpertPlan(t, t * k, expected_distinct_experts(t, e, k), False, 0.0 * t, False)
    pl = dep.placement
    edp = pl.edp if pl is not None else 1
    etp = np.asarray(dep.etp, dtype=float)
    if edp == 1:
        return ExpertPlan(t, t * k / dep.ep * f, expected_distinct_experts(t, e, k) / dep.ep, False, 0.0 * t, False)
    own = t / (np.asarray(dep.tp, dtype=float) * dep.cp)
    group_tokens = own * dep.ep * etp
    message = own * k * dep.model.hidden_size * dep.act_bytes
    return ExpertPlan(own, own * etp * k * f, expected_distinct_experts(group_tokens, e, k) / dep.ep, True,
                      message, bool(np.any(np.asarray(dep.tp) * dep.cp > 1)))
