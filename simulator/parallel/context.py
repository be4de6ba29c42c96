"""Context parallelism: a prompt's sequence split over cp GPUs (prefill), or its KV cache (decode).

Prefill: each GPU holds s/cp of every sequence's tokens (load-balanced causal chunks, as Megatron-LM's
context parallelism and Brandon et al. 2023, arXiv 2311.09431, "Striped Attention", balance them), runs
every GEMM and norm over those tokens, and attends its queries to all s keys: 1/cp of the attention
FLOPs. The keys and values of the other ranks arrive in cp - 1 steps around a ring:

* ring attention (Liu, Zaharia & Abbeel 2023, arXiv 2310.01889): each step passes one KV block one
  way, b·(s/cp)·kv_elems·bytes per layer;
* TokenRing (Wang et al. 2024, arXiv 2412.20501): the query block travels one way,
  b·(s/cp)·h_q·d_qk·bytes, while the previous block's partial output and log-sum-exp come back the
  other way, b·(s/cp)·h_q·(d_v·bytes + 4): both directions of the link at once, so a step takes the
  larger of the two.

A step's transfer overlaps the attention of the block already held (``parallelism.overlap.cp``):
with c the transfer and a one block's attention, exposed = (cp - 1)·max(0, c - a) per layer. Attention
per block falls as (s/cp)^2 while the transfer falls as s/cp, so at high cp the link is exposed.

Decode: each GPU attends to its 1/cp of a sequence's cache; the partial outputs and log-sum-exps are
gathered over the cp group and combined (flash-decoding's split-KV reduction, Dao et al. 2023).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

LSE_BYTES = 4.0  # fp32 log-sum-exp per query head


def local_shape(shape, cp: int):
    """The tokens one CP rank runs through its GEMMs in prefill: s/cp of each sequence."""
    return replace(shape, new_tokens=np.asarray(shape.new_tokens, dtype=float) / cp,
                   chunk_tokens=np.asarray(shape.chunk_tokens, dtype=float) / cp)


def ring_step_bytes(dep, local, qk_dim, v_dim, method: str):
    """Bytes one ring step sends per GPU per layer (the larger direction for TokenRing)."""
    rows = np.asarray(local.batch, dtype=float) * local.new_tokens
    if method == "tokenring":
        heads = dep.q_heads_local
        q = rows * heads * qk_dim * dep.act_bytes
        back = rows * heads * (v_dim * dep.act_bytes + LSE_BYTES)
        return np.maximum(q, back)
    return rows * dep.kv_elems_per_token_layer_local * dep.act_bytes


def decode_gather_bytes(dep, batch, new_tokens, v_dim):
    """The partial outputs and log-sum-exps of all cp ranks, gathered (the whole gathered tensor)."""
    rows = np.asarray(batch, dtype=float) * new_tokens
    return rows * dep.q_heads_local * (v_dim * dep.act_bytes + LSE_BYTES) * dep.cp
