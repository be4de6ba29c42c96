"""FLOPs and HBM bytes of the attention core (scores, softmax, weighted sum), not its projections.

Prefill follows FlashAttention (Dao et al. 2022, arXiv 2205.14135; FA-2, arXiv 2307.08691): the
s×s score matrix stays on chip, so HBM traffic is Q, K, V read once and O written once; K/V tiles
re-read by later query tiles hit L2 at these sizes. FLOPs count the two matmuls, 4·d per
(query, key) pair per head (the FA-2 benchmark convention), over the pairs the mask keeps.

Decode reads every cached K/V element once per step (Fu 2024, arXiv 2405.08944, §3: decoding is
bound by moving the KV cache from HBM to SM) and does 4·d FLOPs per cached token per head.
"""

from __future__ import annotations

import numpy as np


def attended_pairs(new_tokens, past_tokens, window=None) -> np.ndarray:
    """(query, key) pairs kept by a causal mask for ``new_tokens`` queries after ``past_tokens``.

    Query i (1-based) sees ``past + i`` keys, capped at ``window`` for sliding-window attention:
    Σ_i min(past + i, window). Closed form, exact for integer inputs.
    """
    s = np.asarray(new_tokens, dtype=float)
    p = np.asarray(past_tokens, dtype=float)
    full = s * p + s * (s + 1.0) / 2.0
    if window is None:
        return full
    w = float(window)
    # queries with past + i <= w see past + i keys; the rest see w.
    n_free = np.clip(w - p, 0.0, s)  # count of i in [1, s] with p + i <= w
    free = n_free * p + n_free * (n_free + 1.0) / 2.0
    return free + (s - n_free) * w


def attention_flops(pairs, num_q_heads, qk_dim, v_dim=None) -> np.ndarray:
    """2·qk_dim FLOPs for a score plus 2·v_dim for its weighted value, per pair per query head."""
    v_dim = qk_dim if v_dim is None else v_dim
    return np.asarray(pairs, dtype=float) * num_q_heads * 2.0 * (qk_dim + v_dim)


def prefill_attention_bytes(batch, new_tokens, cached_tokens, num_q_heads, q_dim, o_dim, kv_elems_per_token, act_bytes,
                            kv_bytes) -> np.ndarray:
    """Q read and O written for the new tokens, K/V of every token the queries attend read once."""
    b = np.asarray(batch, dtype=float)
    s = np.asarray(new_tokens, dtype=float)
    q_o = b * s * num_q_heads * (q_dim + o_dim) * act_bytes
    return q_o + b * np.asarray(cached_tokens, dtype=float) * kv_elems_per_token * kv_bytes


def decode_attention_bytes(batch, cached_tokens, num_q_heads, q_dim, o_dim, kv_elems_per_token, act_bytes,
                           kv_bytes) -> np.ndarray:
    """One query token per sequence: the KV cache of every sequence read once, plus q and o."""
    b = np.asarray(batch, dtype=float)
    return b * (np.asarray(cached_tokens, dtype=float) * kv_elems_per_token * kv_bytes
                + num_q_heads * (q_dim + o_dim) * act_bytes)
