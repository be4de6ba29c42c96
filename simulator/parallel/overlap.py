"""Overlap as a policy per parallel boundary: which communication hides behind which computation.

Each collective operator names its boundary (``StepOp.overlap``: tp, ep, cp, pp); the scenario's
``parallelism.overlap`` gives each boundary a policy. An overlapped collective stays busy on its link
for its whole time, but only ``max(0, t_comm - t_partner)`` is exposed on the step's critical path
(``OpTime.time_s``; the rest is reported as ``hidden_s``):

* ``tp: ladder``: Ladder-residual (Zhang et al. 2025, arXiv 2501.06589, §3): each block reads the residual
  stream one block earlier, so the all-reduce after attention runs during the MLP and the one after
  the MLP during the next layer's attention: per layer T = max(T_comp, T_comm) instead of the sum.
* ``ep: shared_experts``: dispatch/combine all-to-all behind the shared experts' GEMMs (DeepSeek-V3,
  arXiv 2412.19437, §3.2.2 and its serving notes); ``ep: two_batch``: the step runs as two micro-batches
  and one's all-to-all hides behind the other's computation (DeepSeek's two-batch overlap, SGLang).
* ``cp: attention``: ring attention / TokenRing pass the next block while the current one is attended
  (Liu et al. 2023, arXiv 2310.01889; TokenRing, arXiv 2412.20501): of cp blocks per layer, cp - 1
  transfers overlap cp - 1 block computations, so exposed = (cp - 1) · max(0, c - a) per layer.
* ``pp: next_microbatch`` is applied by ``simulator.parallel.pipeline`` (stage send/recv behind the
  next micro-batch's stage compute).

TP all-reduce is exposed unless asked (``tp: none``), as in vLLM and TensorRT-LLM.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

ATTENTION_BLOCK = ("attn_norm", "attn.", "rotary", "kv_cache_write", "attention.", "attn_residual")
MLP_BLOCK = ("mlp_norm", "moe_norm", "mlp.", "moe.", "mlp_residual", "moe_residual")


def _base(name: str) -> str:
    return name[len("cross."):] if name.startswith("cross.") else name


def _compute(ops, times, prefixes) -> np.ndarray:
    """Summed time of the non-collective operators whose names start with one of ``prefixes``."""
    total = 0.0
    for op, t in zip(ops, times):
        if op.kind != "collective" and getattr(op, "per_layer", False) and _base(op.name).startswith(prefixes):
            total = total + t.time_s
    return np.asarray(total, dtype=float)


def _partners(op, ops, times, policy: str, cp: int):
    """Time of the computation ``op`` hides behind under ``policy``, or None if it stays exposed."""
    name = _base(op.name)
    if policy == "ladder":
        return _compute(ops, times, MLP_BLOCK if name.startswith("attn.") else ATTENTION_BLOCK)
    if policy == "shared_experts":
        return _compute(ops, times, ("moe.shared",))
    if policy == "two_batch":
        return _compute(ops, times, ATTENTION_BLOCK + MLP_BLOCK)
    if policy == "attention":
        return _compute(ops, times, ("attention.",)) * (cp - 1.0) / cp
    return None


def _active(dep) -> dict[str, str]:
    """Boundaries whose policy can hide anything: not ``none``, not pp's (the pipeline applies it), and a
    group of more than one GPU (a one-rank collective moves nothing); ``cp_method`` is no policy."""
    ranks = {"tp": np.max(dep.tp), "ep": dep.ep, "cp": dep.cp}
    return {b: p for b, p in (dep.overlap_boundaries or {}).items()
            if b in ranks and p != "none" and ranks[b] > 1}


def apply_overlaps(ops, times, dep):
    """``times`` with each overlapped collective's exposed part in ``time_s`` and the rest in ``hidden_s``."""
    active = dep.cached("active_overlaps", lambda: _active(dep))
    if not active or not any(op.kind == "collective" and getattr(op, "overlap", "") in active for op in ops):
        return times
    out = []
    for op, t in zip(ops, times):
        boundary = getattr(op, "overlap", "")
        policy = active.get(boundary, "none") if op.kind == "collective" else "none"
        partner = None if policy == "none" else _partners(op, ops, times, policy, max(dep.cp, 1))
        if partner is not None:
            exposed = np.maximum(t.time_s - partner, 0.0)
            t = replace(t, time_s=exposed, hidden_s=t.time_s - exposed)
        out.append(t)
    return out
