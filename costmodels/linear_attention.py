"""FLOPs and HBM bytes of linear attention with a constant-size recurrent state per head.

A linear-attention layer (Based, Arora et al. 2024, arXiv 2402.18668; gated retention in YOCO, Sun
et al. 2024, arXiv 2405.05254) keeps, per head, a state ``S`` of ``state_elems`` elements (e.g. a
feature-dim x head-dim matrix ``Σ φ(k) vᵀ`` and its normaliser) instead of a KV cache. Per token and
head, updating the state and reading it out cost 2·state_elems FLOPs each. Prefill runs the
chunkwise-parallel form (Yang et al. 2023, "Gated Linear Attention", arXiv 2312.06635, §3): within a
chunk of ``CHUNK`` tokens queries attend to the earlier tokens of the chunk directly (on average
CHUNK/2 keys at 4·head_dim FLOPs each), across chunks through the state, which stays on chip; HBM
traffic is q, k, v read and o written once plus the state read and written once per sequence.
"""

from __future__ import annotations

import numpy as np

from costmodels.numeric import num
CHUNK = 64  # tokens per chunk of the chunkwise form (GLA and Based kernels use 64)


def linear_attention_flops(batch, new_tokens, heads, state_elems, head_dim, phase: str) -> np.ndarray:
    """State update and readout for every new token, plus intra-chunk attention in prefill."""
    tokens = num(batch) * num(new_tokens)
    flops = tokens * heads * 4.0 * state_elems
    if phase == "prefill":
        flops = flops + tokens * heads * 4.0 * head_dim * np.minimum(new_tokens, CHUNK) / 2.0
    return flops


def linear_attention_bytes(batch, new_tokens, heads, state_elems, head_dim, act_bytes, state_bytes) -> np.ndarray:
    """q, k, v read and o written per token; each sequence's state read and written once."""
    b = num(batch)
    tokens = b * num(new_tokens)
    return tokens * heads * 4.0 * head_dim * act_bytes + 2.0 * b * heads * state_elems * state_bytes
